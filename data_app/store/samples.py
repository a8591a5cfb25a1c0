"""Checks every kind of sample run shares: sample widths and the int64 nanosecond time range."""

from rta_core.errors import InvalidArgument

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
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
    if not INT64_MIN <= t <= INT64_MAX:
        raise InvalidArgument(f"{what}: sample times overflow 64-bit nanoseconds")


class SampleParts:
    """A run's sample bytes, held as the parts it was written in and joined once when read."""

    __slots__ = ()

    @property
    def data(self):
        if len(self.parts) > 1:
            self.parts = [b"".join(self.parts)]
        return self.parts[0]
