"""The stable chunk grid: fixed time windows that chunks never cross (spec §8, §13).

A data service must serve every sample in the same chunk, with the same start
and end, whatever the request's bounds. The simple way, and the one the
server's own store takes: cut each channel's data at multiples of a fixed
``span`` (windows ``[k * span, (k + 1) * span)``), round a request outwards to
whole windows, and give each chunk the times of the first and last sample
inside its window. The span must depend only on what is stable about a
channel (its configured interval, its sample type), never on the request or
on how much data one request happens to see.

``ChunkGrid.for_interval`` picks a span of about 1000 samples, one of 1, 2, 5,
10, 20, 50 or 100 s (spec: a chunk should span 1-100 s, must not pass 1000 s).
A channel so fast that one second of it would make a list over 1 MiB (before
compression; the hard limit is 4 MiB) gets a sub-second span instead: 0.5,
0.2, 0.1 ... 0.001 s. Every span divides 100 s, so windows of different
channels line up.
"""

from dataclasses import dataclass

SECOND = 1_000_000_000
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

SPANS = tuple(s * SECOND for s in (1, 2, 5, 10, 20, 50, 100))  # the spans chunks should have
SUBSECOND_SPANS = tuple(SECOND // d for d in (2, 5, 10, 20, 50, 100, 200, 500, 1000))  # for very fast channels
MAX_SPAN = 1000 * SECOND  # a chunk must not span more (spec §8)
DEFAULT_SPAN = 10 * SECOND  # when nothing is known about a channel's rate
EVENTS_SPAN = 100 * SECOND  # events are sparse: few, long windows
TARGET_SAMPLES = 1000  # samples per chunk ``for_interval`` aims at
MAX_SPAN_LIST_BYTES = 1024 * 1024  # above this at 1 s, a channel gets a sub-second span
ITEM_OVERHEAD_BYTES = 24  # serialized bytes an item adds beyond its samples (~128 samples an item)


@dataclass(frozen=True)
class ChunkGrid:
    """Windows ``[k * span, (k + 1) * span)`` in nanoseconds; ``k`` any integer (times may be negative)."""

    span: int

    def __post_init__(self):
        if not isinstance(self.span, int) or isinstance(self.span, bool):
            raise TypeError(f"span must be an int of nanoseconds, not {type(self.span).__name__}")
        if not 0 < self.span <= MAX_SPAN:
            raise ValueError(f"span {self.span} ns is not within 1 ns .. 1000 s")

    @classmethod
    def for_interval(cls, interval, sample_bytes=8, samples=TARGET_SAMPLES):
        """The grid of a channel sampled every ``interval`` ns (about ``samples`` samples a chunk).

        ``interval`` None or <= 0 (unknown, or timestamped data without a typical
        interval) gives ``DEFAULT_SPAN``. ``sample_bytes`` (1, 2, 4 or 8) only
        matters for channels so fast that a 1 s chunk would be too large.
        """
        if not interval or interval <= 0:
            return cls(DEFAULT_SPAN)
        target = interval * samples
        span = SPANS[0]
        for candidate in SPANS:
            if candidate <= target:
                span = candidate
        if _list_bytes(span, interval, sample_bytes) > MAX_SPAN_LIST_BYTES:
            span = next(
                (s for s in SUBSECOND_SPANS if _list_bytes(s, interval, sample_bytes) <= MAX_SPAN_LIST_BYTES),
                SUBSECOND_SPANS[-1],
            )
        return cls(span)

    @classmethod
    def for_times(cls, times, sample_bytes=8, samples=TARGET_SAMPLES):
        """The grid for irregular data from its mean interval (``times``: sorted ns, e.g. a whole file).

        Only stable when ``times`` are always the same whole series (not one
        request's share of it): prefer ``for_interval`` with a configured rate.
        """
        n = len(times)
        if n < 2:
            return cls(DEFAULT_SPAN)
        return cls.for_interval(max(1, (int(times[-1]) - int(times[0])) // (n - 1)), sample_bytes, samples)

    def window_start(self, t):
        """Start of the window holding time ``t``."""
        return t // self.span * self.span

    def window(self, t):
        """``(first, last)`` ns of the window holding ``t`` (both inclusive)."""
        first = self.window_start(t)
        return first, first + self.span - 1

    def snap(self, start=None, end=None):
        """Request bounds (inclusive, None = open) rounded outwards to whole windows, within int64.

        Read this range from the store: every chunk the request overlaps is then complete.
        """
        first = INT64_MIN if start is None else max(INT64_MIN, self.window_start(start))
        last = INT64_MAX if end is None else min(INT64_MAX, self.window_start(end) + self.span - 1)
        return first, last

    def windows(self, start, end):
        """``(first, last)`` (inclusive) of every window overlapping ``[start, end]``, in time order."""
        if start > end:
            return
        first = self.window_start(start)
        while first <= end:
            yield first, first + self.span - 1
            first += self.span


def _list_bytes(span, interval, sample_bytes):
    samples = span // interval + 1
    return samples * sample_bytes + (samples // 128 + 1) * ITEM_OVERHEAD_BYTES
