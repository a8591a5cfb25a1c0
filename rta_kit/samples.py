"""Checks every kind of sample run shares: sample widths and the storable nanosecond time range."""

from rta_core.errors import InvalidArgument

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# A chunk window starts at a multiple of its span (``writer.SPANS``, each dividing WINDOW_ALIGNMENT),
# stored as int64: a time before the int64 range's first whole WINDOW_ALIGNMENT would have its window
# start below it. So times are storable from there (about 37 s after the int64 minimum) to the maximum.
WINDOW_ALIGNMENT = 100 * 1_000_000_000
TIME_MIN = -(-INT64_MIN // WINDOW_ALIGNMENT) * WINDOW_ALIGNMENT  # -9223372000000000000
TIME_MAX = INT64_MAX
WIDTHS = (1, 2, 4, 8)


def sample_width(buffer_length, samples, what):
    """Bytes per sample of a buffer holding ``samples``; raises InvalidArgument unless 1, 2, 4 or 8."""
    if samples <= 0:
        raise InvalidArgument(f"{what}: samples must be positive")
    if buffer_length % samples:
        raise InvalidArgument(f"{what}: buffer length {buffer_length} is not a multiple of {samples} samples")
    width = buffer_length // samples
    if width not in WIDTHS:
        raise InvalidArgument(f"{what}: sample width {width} bytes is not 1, 2, 4 or 8")
    return width


def check_time(t, what):
    """Raise InvalidArgument unless ``t`` (ns) is storable: within ``TIME_MIN``..``TIME_MAX``."""
    if not TIME_MIN <= t <= TIME_MAX:
        raise InvalidArgument(f"{what}: time {t} overflows the storable range {TIME_MIN}..{TIME_MAX} ns")


class SampleParts:
    """A run's sample bytes, held as the parts it was written in and joined once when read."""

    __slots__ = ()

    @property
    def data(self):
        if len(self.parts) > 1:
            self.parts = [b"".join(self.parts)]
        return self.parts[0]
