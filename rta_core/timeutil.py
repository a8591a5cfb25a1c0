"""Time as the services and the admin pictures use it: ISO 8601 timestamps at nanosecond precision
(keeping the zone offset), instants in nanoseconds since the Unix epoch, and their human forms."""

import re
from datetime import UTC, datetime, timedelta

from rta_core.errors import InvalidArgument, excerpt

_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<zone>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NS_PER_S = 1_000_000_000


class Timestamp:
    """A parsed timestamp: the instant in ns, the zone offset in minutes, and canonical text."""

    __slots__ = ("ns", "offset_minutes", "text")

    def __init__(self, ns, offset_minutes, text):
        self.ns, self.offset_minutes, self.text = ns, offset_minutes, text

    @property
    def datetime(self):
        return ns_to_datetime(self.ns)


def ns_to_datetime(ns):
    """The UTC ``datetime`` of nanoseconds since the epoch (to the microsecond)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def parse_timestamp(text, what="timestamp", field=None):
    """Parse ISO 8601 text; a missing zone means UTC. Raises InvalidArgument (naming ``field``) when malformed."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be an ISO 8601 string", field=field)
    match = _ISO.match(text.strip())
    if not match:
        raise InvalidArgument(f"{what} {excerpt(text)} is not an ISO 8601 date-time", field=field)
    time = match["time"] if match["time"].count(":") == 2 else match["time"] + ":00"
    try:
        base = datetime.fromisoformat(f"{match['date']}T{time}")
    except ValueError:
        raise InvalidArgument(f"{what} {excerpt(text)} is not a valid date-time", field=field) from None
    zone = match["zone"]
    if zone in (None, "Z", "z"):
        offset = 0
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise InvalidArgument(f"{what} {excerpt(text)} has an invalid zone offset", field=field)
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


# --- human forms (the admin's pages and pictures) --------------------------------------------


def format_utc(ns, with_date=True, precision=3):
    """``2024-05-20 14:00:00.000`` (UTC) for nanoseconds since the epoch."""
    text = ns_to_datetime(ns).strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
    if precision:
        text += "." + f"{ns % NS_PER_S:09d}"[:precision]
    return text


def format_range(start, end, precision=3, zone=" UTC", with_date=True):
    """``2024-05-20 14:00:00.000 → 14:10:00.000 UTC`` (the date once when both ends share it)."""
    if start is None or end is None:
        return "—"
    same_day = ns_to_datetime(start).date() == ns_to_datetime(end).date()
    first = format_utc(start, with_date=with_date, precision=precision)
    return f"{first} → {format_utc(end, with_date=with_date and not same_day, precision=precision)}{zone}"


def format_duration(ns):
    """A compact human duration: ``10 min 0 s``, ``1 h 2 min 3 s``, ``2.5 s``, ``350 ms``, ``2 d 3 h 0 min``."""
    if ns is None:
        return "—"
    sign = "-" if ns < 0 else ""
    ns = abs(int(ns))
    if ns < NS_PER_S:
        if ns >= 1_000_000:
            return f"{sign}{ns / 1_000_000:g} ms"
        if ns >= 1000:
            return f"{sign}{ns / 1000:g} µs"
        return f"{sign}{ns} ns"
    seconds, frac = divmod(ns, NS_PER_S)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{sign}{days} d {hours} h {minutes} min"
    if hours:
        return f"{sign}{hours} h {minutes} min {secs} s"
    if minutes:
        return f"{sign}{minutes} min {secs} s"
    if frac:
        return f"{sign}{secs + frac / NS_PER_S:.3f}".rstrip("0").rstrip(".") + " s"
    return f"{sign}{secs} s"


_MS, _MIN, _H = 1_000_000, 60 * NS_PER_S, 3600 * NS_PER_S
TICK_STEPS_NS = (
    [n * _MS for n in (1, 2, 5, 10, 20, 50, 100, 200, 500)]
    + [n * NS_PER_S for n in (1, 2, 5, 10, 15, 30)]
    + [n * _MIN for n in (1, 2, 5, 10, 15, 30)]
    + [n * _H for n in (1, 2, 3, 6, 12, 24, 48, 168)]
)


def tick_step(span, max_ticks=7):
    """The smallest round step (1 ms ... 1 week) that puts at most ``max_ticks`` ticks on a time axis of ``span`` ns."""
    for step in TICK_STEPS_NS:
        if span / step <= max_ticks:
            return step
    return span
