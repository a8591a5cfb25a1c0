"""ISO 8601 timestamps at nanosecond precision, keeping the zone offset."""

import re
from datetime import UTC, datetime, timedelta

from rta_core.errors import InvalidArgument

_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<zone>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Timestamp:
    """A parsed timestamp: the instant in ns, the zone offset in minutes, and canonical text."""

    __slots__ = ("ns", "offset_minutes", "text")

    def __init__(self, ns, offset_minutes, text):
        self.ns, self.offset_minutes, self.text = ns, offset_minutes, text

    @property
    def datetime(self):
        return _EPOCH + timedelta(microseconds=self.ns // 1000)


def parse_timestamp(text, what="timestamp"):
    """Parse ISO 8601 text; a missing zone means UTC. Raises InvalidArgument when malformed."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be an ISO 8601 string")
    match = _ISO.match(text.strip())
    if not match:
        raise InvalidArgument(f"{what} {text!r} is not an ISO 8601 date-time")
    time = match["time"] if match["time"].count(":") == 2 else match["time"] + ":00"
    try:
        base = datetime.fromisoformat(f"{match['date']}T{time}")
    except ValueError:
        raise InvalidArgument(f"{what} {text!r} is not a valid date-time") from None
    zone = match["zone"]
    if zone in (None, "Z", "z"):
        offset = 0
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise InvalidArgument(f"{what} {text!r} has an invalid zone offset")
        offset = sign * (hours * 60 + minutes)
    frac = (match["frac"] or "").ljust(9, "0")
    local_ns = int((base.replace(tzinfo=UTC) - _EPOCH).total_seconds()) * 1_000_000_000 + int(frac)
    ns = local_ns - offset * 60_000_000_000
    return Timestamp(ns, offset, format_ns(ns, offset))


def format_ns(ns, offset_minutes=0):
    """ISO 8601 text for an instant in the given zone offset, with trailing zeros of the fraction dropped."""
    local = ns + offset_minutes * 60_000_000_000
    seconds, frac = divmod(local, 1_000_000_000)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def now_timestamp():
    now = datetime.now(UTC)
    ns = int((now - _EPOCH).total_seconds()) * 1_000_000_000 + now.microsecond * 1000
    return Timestamp(ns, 0, format_ns(ns, 0))
