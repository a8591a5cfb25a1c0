"""Validation of the plain values sessions carry (details, quality, state, time ranges)."""

import json
import math

from rta_core.errors import InvalidArgument
from sessions_app.models import SessionState

STATE_BY_NAME = {label: value for value, label in SessionState.choices}
STATE_NAMES = {value: label for value, label in SessionState.choices}


def validate_state(value):
    if isinstance(value, bool) or not isinstance(value, int) or value not in STATE_NAMES:
        raise InvalidArgument(f"state {value!r} is not one of " + ", ".join(f"{n}={v}" for v, n in STATE_NAMES.items()))
    return value


def validate_quality(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        raise InvalidArgument(f"quality {value!r} is outside 0.0-1.0")
    return float(value)


def validate_time_range(start, end):
    for name, v in (("start_time", start), ("end_time", end)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidArgument(f"time range {name} must be an integer number of nanoseconds")
    if start > end:
        raise InvalidArgument(f"time range start {start} is after end {end}")
    return start, end


def validate_detail_value(key, value, where="details"):
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{where}.{key}: {value!r} is not a finite number")
        return value
    if value is None:
        raise InvalidArgument(f"{where}.{key}: null is not allowed (delete the detail instead)")
    raise InvalidArgument(
        f"{where}.{key}: {type(value).__name__} values are not allowed; details are flat maps of "
        "string, number, integer or boolean"
    )


def validate_details(details, where="details"):
    """A flat map of string keys to string/number/integer/boolean values."""
    if not isinstance(details, dict):
        raise InvalidArgument(f"{where} must be an object")
    out = {}
    for key, value in details.items():
        if not isinstance(key, str) or key == "":
            raise InvalidArgument(f"{where}: keys must be non-empty strings")
        out[key] = validate_detail_value(key, value, where)
    return out


def parse_details_json(text, where="details"):
    """Details given as JSON text (gRPC set_details_json / update_details_json)."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{where} JSON must be a string")
    try:
        parsed = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise InvalidArgument(f"{where} JSON is malformed: {exc}") from None
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
