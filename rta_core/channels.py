"""Channel expressions (spec §8): comma-separated hexadecimal channel ids or ranges.

``-5,7,B-D,14-`` means channels 0..5, 7, 0xB..0xD and 0x14 upwards. Ranges may be
open at either end (not both). Anything else (empty parts, non-hex digits, a
range whose start is after its end, ids beyond uint32) is ``InvalidArgument``.

Kept in the kernel, free of Django at import time, so every app (the data
service, the Schema Mapping Service) and the adapter kit parse them one way.
"""

import re

from rta_core.errors import InvalidArgument, excerpt

MAX_CHANNEL = 0xFFFFFFFF
_HEX = re.compile(r"[0-9A-Fa-f]{1,8}")


class ChannelSet:
    """A parsed expression: sorted, merged, inclusive ``(low, high)`` ranges."""

    def __init__(self, ranges):
        self.ranges = _merge(ranges)

    def __contains__(self, channel):
        return any(lo <= channel <= hi for lo, hi in self.ranges)

    def matches(self, channel):
        return channel in self

    def matches_any(self, channels):
        return any(c in self for c in channels)

    def q(self, field="channel"):
        """A Django ``Q`` selecting rows whose ``field`` lies in the set."""
        from django.db.models import Q

        query = Q(pk__in=[])
        for lo, hi in self.ranges:
            if lo == hi:
                query |= Q(**{field: lo})
            else:
                query |= Q(**{f"{field}__gte": lo, f"{field}__lte": hi})
        return query

    def __eq__(self, other):
        return isinstance(other, ChannelSet) and self.ranges == other.ranges

    def __repr__(self):
        return f"ChannelSet({self.ranges!r})"


def _merge(ranges):
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _hex(text, expression):
    if not _HEX.fullmatch(text):
        raise InvalidArgument(
            f"malformed channel expression {excerpt(expression)}: {excerpt(text)} is not a hexadecimal channel id"
        )
    return int(text, 16)


def parse_channels(expression):
    """Parse a channel expression into a ``ChannelSet`` (raises ``InvalidArgument``)."""
    if not isinstance(expression, str) or expression.strip() == "":
        raise InvalidArgument("channel expression is empty")
    ranges = []
    for part in expression.split(","):
        if part == "":
            raise InvalidArgument(f"malformed channel expression {excerpt(expression)}: empty element")
        if "-" in part:
            low, sep, high = part.partition("-")
            if "-" in high or (low == "" and high == ""):
                raise InvalidArgument(f"malformed channel expression {excerpt(expression)}: bad range {excerpt(part)}")
            lo = 0 if low == "" else _hex(low, expression)
            hi = MAX_CHANNEL if high == "" else _hex(high, expression)
            if lo > hi:
                raise InvalidArgument(
                    f"malformed channel expression {excerpt(expression)}: range {excerpt(part)} is reversed"
                )
        else:
            lo = hi = _hex(part, expression)
        ranges.append((lo, hi))
    return ChannelSet(ranges)
