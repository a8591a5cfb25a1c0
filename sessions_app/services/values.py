"""Validation of the plain values sessions carry (details, quality, state, time ranges), and the marker
category that makes a marker a lap.

Errors name the argument they concern (``InvalidArgument.field``) so that adapters such as the admin
can show them beside it.
"""

import json
import math

from rta_core.errors import InvalidArgument, excerpt
from sessions_app.models import SessionState

STATE_BY_NAME = {label: value for value, label in SessionState.choices}
STATE_NAMES = {value: label for value, label in SessionState.choices}

# Markers in this category are laps (ATLAS lists them as such; the ingest writes them, the admin plot draws
# them). The match is exact: a marker is a lap when ``marker.category == LAPS_CATEGORY``.
LAPS_CATEGORY = "Laps"


def validate_state(value):
    if isinstance(value, bool) or not isinstance(value, int) or value not in STATE_NAMES:
        raise InvalidArgument(
            f"state {excerpt(value)} is not one of " + ", ".join(f"{n}={v}" for v, n in STATE_NAMES.items()),
            field="state",
        )
    return value


def validate_quality(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        raise InvalidArgument(f"quality {excerpt(value)} is outside 0.0-1.0", field="quality")
    return float(value)


def validate_time_range(start, end):
    for name, v in (("start_time", start), ("end_time", end)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidArgument(f"time range {name} must be an integer number of nanoseconds", field=name)
    if start > end:
        raise InvalidArgument(f"time range start {start} is after end {end}", field="end_time")
    return start, end


def _details_field(where):
    """The session field a details error concerns: ``details``, or ``ext_details`` for ``extDetails.<group>``."""
    return "details" if where == "details" else "ext_details"


def validate_detail_value(key, value, where="details"):
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(
                f"{where}.{key}: {excerpt(value)} is not a finite number", field=_details_field(where)
            )
        return value
    if value is None:
        raise InvalidArgument(
            f"{where}.{key}: null is not allowed (delete the detail instead)", field=_details_field(where)
        )
    raise InvalidArgument(
        f"{where}.{key}: {type(value).__name__} values are not allowed; details are flat maps of "
        "string, number, integer or boolean",
        field=_details_field(where),
    )


def validate_details(details, where="details"):
    """A flat map of string keys to string/number/integer/boolean values."""
    if not isinstance(details, dict):
        raise InvalidArgument(f"{where} must be an object", field=_details_field(where))
    out = {}
    for key, value in details.items():
        if not isinstance(key, str) or key == "":
            raise InvalidArgument(f"{where}: keys must be non-empty strings", field=_details_field(where))
        out[key] = validate_detail_value(key, value, where)
    return out


def parse_details_json(text, where="details"):
    """Details given as JSON text (gRPC set_details_json / update_details_json)."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{where} JSON must be a string", field=_details_field(where))
    try:
        parsed = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise InvalidArgument(f"{where} JSON is malformed: {exc}", field=_details_field(where)) from None
    return validate_details(parsed, where)


def parse_json_object(text, where):
    """A JSON object given as text (marker details); empty text is an empty object."""
    if text in (None, ""):
        return {}
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{where} is malformed JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"{where} must be a JSON object")
    return parsed
