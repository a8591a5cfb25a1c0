"""Validation, timing and splitting of the data items the writer receives."""
from rta.model import data_pb2

from rta_site.errors import InvalidArgument

MAX_ITEM_SAMPLES = 10_000      # spec §8: an item must not exceed this
TARGET_ITEM_SAMPLES = 128      # ... and should hold up to this
_WIDTHS = (1, 2, 4, 8)

MESSAGE_TYPES = {
    "timestamped": data_pb2.TimestampedData,
    "periodic": data_pb2.PeriodicData,
    "row": data_pb2.RowData,
    "events": data_pb2.Event,
}
LIST_FIELDS = {"timestamped": "timestamped_data", "periodic": "periodic_data", "row": "row_data", "events": "events"}


def row_key(channel_ids):
    """A stable positive 62-bit key for a row data channel set (in buffer order)."""
    import hashlib

    digest = hashlib.blake2b(",".join(str(c) for c in channel_ids).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def channel_key(kind, item):
    if kind in ("timestamped", "periodic"):
        return item.channel_id, [item.channel_id]
    if kind == "row":
        return row_key(item.channel_ids), list(item.channel_ids)
    return 0, []


def _width(buffer_length, samples, what):
    if samples <= 0:
        raise InvalidArgument(f"{what}: samples must be positive")
    if buffer_length % samples:
        raise InvalidArgument(f"{what}: buffer length {buffer_length} is not a multiple of {samples} samples")
    width = buffer_length // samples
    if width not in _WIDTHS:
        raise InvalidArgument(f"{what}: sample width {width} bytes is not 1, 2, 4 or 8")
    return width


def validate(kind, item):
    """Raise InvalidArgument for an item that cannot be stored."""
    if kind == "periodic":
        what = f"periodic data for channel {item.channel_id:x}"
        _width(len(item.buffer), item.samples, what)
        if item.samples > 1 and item.interval <= 0:
            raise InvalidArgument(f"{what}: interval must be positive")
    elif kind == "timestamped":
        what = f"timestamped data for channel {item.channel_id:x}"
        _width(len(item.buffer), len(item.timestamp_deltas), what)
        if any(d < 0 for d in item.timestamp_deltas):
            raise InvalidArgument(f"{what}: timestamp deltas must not be negative")
        if item.timestamp_deltas_scale < 0:
            raise InvalidArgument(f"{what}: timestamp_deltas_scale must not be negative")
    elif kind == "row":
        if not item.channel_ids:
            raise InvalidArgument("row data without channel_ids")
        if len(item.buffer) < len(item.channel_ids):
            raise InvalidArgument("row data buffer is shorter than one byte per channel")


def _scale(item):
    # An unset scale (0) means the deltas are plain nanoseconds.
    return item.timestamp_deltas_scale or 1


def times(kind, item):
    """Sample times of a timestamped item (other kinds: not needed)."""
    t, scale, out = item.start_timestamp, _scale(item), []
    for d in item.timestamp_deltas:
        t += scale * d
        out.append(t)
    return out


def start_time(kind, item):
    if kind == "timestamped":
        return item.start_timestamp + _scale(item) * (item.timestamp_deltas[0] if item.timestamp_deltas else 0)
    if kind == "periodic":
        return item.start_timestamp
    return item.timestamp


def end_time(kind, item):
    """Time of the last sample."""
    if kind == "timestamped":
        return item.start_timestamp + _scale(item) * sum(item.timestamp_deltas)
    if kind == "periodic":
        return item.start_timestamp + (item.samples - 1) * item.interval
    return item.timestamp


def sample_count(kind, item):
    if kind == "timestamped":
        return len(item.timestamp_deltas)
    if kind == "periodic":
        return item.samples
    return 1


def split(kind, item, span=None, max_samples=TARGET_ITEM_SAMPLES):
    """``item`` cut into items of at most ``max_samples`` that never cross a multiple of ``span``."""
    if kind == "periodic":
        return _split_periodic(item, span, max_samples)
    if kind == "timestamped":
        return _split_timestamped(item, span, max_samples)
    return [item]


def _cuts(sample_times, span, max_samples):
    """Index ranges [i, j) of at most max_samples within one span window each."""
    cuts, i, n = [], 0, len(sample_times)
    while i < n:
        j = min(n, i + max_samples)
        if span:
            window = sample_times[i] // span
            k = i + 1
            while k < j and sample_times[k] // span == window:
                k += 1
            j = k
        cuts.append((i, j))
        i = j
    return cuts


def _split_periodic(item, span, max_samples):
    n = item.samples
    if n <= max_samples and (not span or item.start_timestamp // span == end_time("periodic", item) // span):
        return [item]
    width = len(item.buffer) // n
    sample_times = [item.start_timestamp + i * item.interval for i in range(n)]
    return [
        data_pb2.PeriodicData(
            channel_id=item.channel_id,
            start_timestamp=sample_times[i],
            interval=item.interval,
            samples=j - i,
            buffer=item.buffer[i * width:j * width],
        )
        for i, j in _cuts(sample_times, span, max_samples)
    ]


def _split_timestamped(item, span, max_samples):
    n = len(item.timestamp_deltas)
    if n <= max_samples and (not span or start_time("timestamped", item) // span == end_time("timestamped", item) // span):
        return [item]
    width = len(item.buffer) // n
    sample_times = times("timestamped", item)
    pieces = []
    for i, j in _cuts(sample_times, span, max_samples):
        pieces.append(
            data_pb2.TimestampedData(
                channel_id=item.channel_id,
                start_timestamp=sample_times[i],
                timestamp_deltas_scale=item.timestamp_deltas_scale,
                timestamp_deltas=[0, *item.timestamp_deltas[i + 1:j]],
                buffer=item.buffer[i * width:j * width],
            )
        )
    return pieces
