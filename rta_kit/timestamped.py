"""Timestamped samples held as numpy arrays: runs, validation, cutting and wire encoding.

A ``TimestampedRun`` is one channel's samples at ``start + scale * offsets[i]``,
``offsets`` being the running sum of its deltas (``deltas[0]`` is 0). Deltas
are int64 arrays taken from protobuf with one copy (``np.array`` of a repeated
field) or computed from sample times, and items are encoded straight to wire
format with vectorised varints: no step touches a sample from Python, which
keeps timestamped writes within a small factor of periodic ones.

Every run spans at most 2^63 - 1 ns (about 292 years), so offsets times scale
never overflow int64. Arrays held by a run are never changed in place (runs
made by ``piece`` or ``absorb`` may share them).
"""

import struct
from itertools import accumulate

import numpy as np

from rta_core.errors import InvalidArgument
from rta_kit.samples import INT64_MAX, SampleParts, check_time, sample_width
from rta_kit.varints import encode_small_varints, encode_varint, encode_varints, varint_lengths

_FIXED64 = struct.Struct("<q").pack


class TimestampedRun(SampleParts):
    __slots__ = ("start", "end", "scale", "width", "samples", "delta_parts", "parts")

    def __init__(self, start, end, scale, width, deltas, data):
        self.start, self.end, self.scale, self.width = start, end, scale, width
        self.samples = len(deltas)
        self.delta_parts, self.parts = [deltas], [data]

    @classmethod
    def from_times(cls, times, data, width, what="timestamped data"):
        """A run of sorted int64 sample ``times`` and their ``data`` (``width`` bytes each)."""
        return cls.from_timing(cls.timing(times, what), data, width, what)

    @staticmethod
    def timing(times, what="timestamped data"):
        """``(first, last, scale, deltas)`` of sorted int64 sample ``times``, for ``from_timing``.

        The scale is the greatest common divisor of the gaps (10 ms telemetry
        stores deltas of 1), which keeps the varints short. Channels sampled
        together share one timing (runs never change its array).
        """
        n = len(times)
        if n == 0:
            raise InvalidArgument(f"{what}: no samples")
        first, last = int(times[0]), int(times[-1])
        if last - first > INT64_MAX:
            raise InvalidArgument(f"{what}: samples span more than 2^63 ns")
        check_time(first, what)
        check_time(last, what)
        gaps = np.diff(times)
        if n > 1 and gaps.min() < 0:
            raise InvalidArgument(f"{what}: sample times are not in order")
        scale = int(np.gcd.reduce(gaps)) if n > 1 else 0
        # empty, not zeros: numpy lets go of the GIL to allocate zeroed memory, and a flush
        # thread then holds it for a whole switch interval.
        deltas = np.empty(n, dtype=np.int64)
        deltas[0] = 0
        if scale:
            np.floor_divide(gaps, scale, out=deltas[1:])
        else:
            deltas[1:] = 0
        return first, last, scale or 1, deltas

    @classmethod
    def from_timing(cls, timing, data, width, what="timestamped data"):
        """The run of ``data`` (``width`` bytes per sample) at the times ``timing`` describes."""
        first, last, scale, deltas = timing
        if len(data) != len(deltas) * width:
            raise InvalidArgument(f"{what}: {len(deltas)} times for {len(data)} bytes of {width}-byte samples")
        return cls(first, last, scale, width, deltas, data)

    @property
    def deltas(self):
        if len(self.delta_parts) > 1:
            self.delta_parts = [np.concatenate(self.delta_parts)]
        return self.delta_parts[0]

    def absorb(self, other):
        """Append ``other`` if it starts after this run's last sample on the same time grid."""
        gap = other.start - self.end
        if (
            other.width != self.width
            or other.scale != self.scale
            or gap <= 0
            or gap % self.scale
            or other.end - self.start > INT64_MAX
        ):
            return False
        deltas = other.deltas.copy()
        deltas[0] = gap // self.scale
        self.delta_parts.append(deltas)
        self.parts += other.parts
        self.samples += other.samples
        self.end = other.end
        return True

    def copy(self):
        """A run that can absorb others without changing this one."""
        out = TimestampedRun(self.start, self.end, self.scale, self.width, self.deltas, None)
        out.parts = list(self.parts)
        return out

    def offsets(self):
        """Cumulative deltas: sample ``i`` is at ``start + scale * offsets[i]``."""
        return np.cumsum(self.deltas)

    def times(self):
        return self.start + self.scale * self.offsets()

    def sample_times(self):
        return self.times().tolist()

    def piece(self, i, j, offsets=None):
        """Samples ``[i, j)`` as a new run (no copy when that is all of them)."""
        if i == 0 and j == self.samples:
            return self
        offsets = self.offsets() if offsets is None else offsets
        deltas = self.deltas[i:j].copy()
        deltas[0] = 0
        w = self.width
        return TimestampedRun(
            self.start + self.scale * int(offsets[i]),
            self.start + self.scale * int(offsets[j - 1]),
            self.scale,
            w,
            deltas,
            self.data[i * w : j * w],
        )

    def cut(self, span):
        """This run cut at multiples of ``span``: a list of (window start, piece)."""
        first_window, last_window = self.start // span, self.end // span
        if first_window == last_window:
            return [(first_window * span, self)]
        offsets = self.offsets()
        if last_window - first_window <= self.samples:
            # Each boundary's first sample, found in offset space (time = start + scale * offset).
            top = int(offsets[-1]) + 1
            bounds = [
                min(top, -(-(b * span - self.start) // self.scale)) for b in range(first_window + 1, last_window + 1)
            ]
            edges = [0, *np.searchsorted(offsets, bounds).tolist(), self.samples]
        else:  # sparse samples over many windows
            windows = (self.start + self.scale * offsets) // span
            edges = [0, *(np.flatnonzero(np.diff(windows)) + 1).tolist(), self.samples]
        return [
            ((self.start + self.scale * int(offsets[i])) // span * span, self.piece(i, j, offsets))
            for i, j in zip(edges, edges[1:])
            if j > i
        ]

    def item_bodies(self, channel_id, max_samples):
        """Serialized ``TimestampedData`` items of at most ``max_samples``, with each item's first and last time.

        Byte for byte what protobuf serializes (fields in number order, zero
        values left out): channel_id (1), start_timestamp (2, sfixed64),
        timestamp_deltas_scale (3), packed timestamp_deltas (4), buffer (5).
        """
        return [(b"".join(fields), first, last) for fields, _size, first, last in self._items(channel_id, max_samples)]

    def list_entries(self, channel_id, max_samples):
        """This run as serialized ``TimestampedDataList`` entries (field 1) of at most ``max_samples``."""
        return b"".join(self.list_entry_parts(channel_id, max_samples))

    def list_entry_parts(self, channel_id, max_samples):
        """``list_entries`` as bytes-like parts, for a caller joining several runs' entries in one copy."""
        parts = self._equal_entries(channel_id, max_samples)
        if parts is not None:
            return parts
        parts = []
        for fields, size, _first, _last in self._items(channel_id, max_samples):
            parts += (b"\x0a", encode_varint(size), *fields)
        return parts

    def _equal_entries(self, channel_id, m):
        """The entries as one buffer, built as a numpy table when every full item encodes to the same length.

        That is the usual case (every delta but an item's first takes the same
        number of varint bytes, no item starts at time 0): rows are then
        filled column by column, with no Python work per item, and the
        remainder (under ``m`` samples, encoded as usual) goes in after them.
        Returns ``[buffer]``, or None when the items differ in length.
        """
        n, w, k = self.samples, self.width, self.samples // m
        if k < 2 or m < 2:
            return None
        deltas = self.deltas
        blocks = deltas[: k * m].reshape(k, m)
        inner = blocks[:, 1:]  # each full item's deltas after its first (written as 0)
        step = _equal_varint_length(deltas[1 : k * m])  # all at once (a contiguous array) ...
        if step is None:
            step = _equal_varint_length(inner)  # ... else without the items' first deltas
            if step is None:
                return None
        sums = blocks.sum(axis=1)  # each full item's deltas, its first included
        starts = self.start + self.scale * (np.cumsum(sums) - sums + blocks[:, 0])
        if not starts.all():  # an item at time 0 leaves its time field out
            return None
        tail = b""
        if n > k * m:
            rest = deltas[k * m :].copy()
            first = self.start + self.scale * (int(sums.sum()) + int(rest[0]))
            rest[0] = 0
            tail = TimestampedRun(first, self.end, self.scale, w, rest, self.data[k * m * w :]).list_entries(
                channel_id, m
            )
        head = b"\x08" + encode_varint(channel_id) if channel_id else b""
        delta_bytes = 1 + (m - 1) * step
        middle = b"\x18" + encode_varint(self.scale) + b"\x22" + encode_varint(delta_bytes) + b"\x00"
        buffer_header = b"\x2a" + encode_varint(m * w)
        size = len(head) + 9 + len(middle) + delta_bytes - 1 + len(buffer_header) + m * w
        lead = b"\x0a" + encode_varint(size) + head + b"\x11"
        widths = (len(lead), 8, len(middle), (m - 1) * step, len(buffer_header), m * w)
        row = sum(widths)
        out = np.empty(k * row + len(tail), np.uint8)
        out[k * row :] = np.frombuffer(tail, dtype=np.uint8)
        table = out[: k * row].reshape(k, row)
        edges = list(accumulate(widths, initial=0))
        column = [table[:, a:b] for a, b in zip(edges, edges[1:])]
        column[0][:] = np.frombuffer(lead, dtype=np.uint8)
        column[1][:] = starts.astype("<i8").view(np.uint8).reshape(k, 8)
        column[2][:] = np.frombuffer(middle, dtype=np.uint8)
        groups = column[3].reshape(k, m - 1, step)  # the deltas' varints, byte by byte
        for b in range(step):
            group = (inner >> (7 * b) if b else inner).astype(np.uint8)
            if b < step - 1:
                np.bitwise_or(group, 0x80, out=groups[:, :, b])
            else:
                groups[:, :, b] = group
        column[4][:] = np.frombuffer(buffer_header, dtype=np.uint8)
        column[5][:] = np.frombuffer(self.data, dtype=np.uint8, count=k * m * w).reshape(k, m * w)
        return [memoryview(out)]

    def _items(self, channel_id, max_samples):
        """Per item: its fields as byte strings, their total size, its first and last time."""
        n, w, data, deltas, scale = self.samples, self.width, self.data, self.deltas, self.scale
        head = b"\x08" + encode_varint(channel_id) if channel_id else b""
        scale_field = b"\x18" + encode_varint(scale)
        fixed = len(head) + len(scale_field) + 3  # + the 0x22 and 0x2a tags and the first delta (0)
        # Every delta but the run's first is encoded once; an item's deltas are a 0 (its first)
        # followed by the bytes of the deltas of its other samples.
        rest = deltas[1:]
        top = int(rest.max()) if n > 1 else 0
        if top < 0x80:  # one byte each (regular data: deltas of 1 at its scale)
            packed, lengths = rest.astype(np.uint8).tobytes(), None
        elif n <= min(max_samples, 256) and top < 16384:  # one short item: fewer steps from Python
            packed, lengths = encode_small_varints(rest.tolist()), None
        else:
            lengths = varint_lengths(rest)
            packed = encode_varints(rest, lengths)
        if n <= max_samples:  # one item (live items of array writes): no item boundaries to find
            starts, ends, spans = [self.start], [self.end], [(0, n - 1, 0, len(packed))]
        else:
            # Where delta i + 1 starts in packed.
            positions = np.arange(n) if lengths is None else np.concatenate(([0], np.cumsum(lengths)))
            firsts = np.arange(0, n, max_samples)
            lasts = np.minimum(firsts + max_samples, n) - 1
            offsets = np.cumsum(deltas)
            starts = (self.start + scale * offsets[firsts]).tolist()
            ends = (self.start + scale * offsets[lasts]).tolist()
            spans = zip(firsts.tolist(), lasts.tolist(), positions[firsts].tolist(), positions[lasts].tolist())
        out = []
        for k, (i, last, a, b) in enumerate(spans):
            first = starts[k]
            time_field = b"\x11" + _FIXED64(first) if first else b""
            deltas_length, buffer_length = encode_varint(1 + b - a), encode_varint((last + 1 - i) * w)
            fields = (
                head,
                time_field,
                scale_field,
                b"\x22",
                deltas_length,
                b"\x00",
                packed[a:b],
                b"\x2a",
                buffer_length,
                data[i * w : (last + 1) * w],
            )
            size = fixed + len(time_field) + len(deltas_length) + b - a + len(buffer_length) + (last + 1 - i) * w
            out.append((fields, size, first, ends[k]))
        return out


def _equal_varint_length(values):
    """The varint length every one of ``values`` (non-negative) takes, or None if they differ."""
    low, high = int(values.min()), int(values.max())
    step = max(1, -(-high.bit_length() // 7))
    return step if step == 1 or low >> (7 * (step - 1)) else None


def timestamped_run(item):
    """``item`` (TimestampedData) validated, as a run; raises InvalidArgument."""
    deltas = np.array(item.timestamp_deltas, dtype=np.int64)  # one copy, no per-element work
    data, scale = item.buffer, item.timestamp_deltas_scale
    what = f"timestamped data for channel {item.channel_id:x}"
    width = sample_width(len(data), len(deltas), what)
    if scale < 0:
        raise InvalidArgument(f"{what}: timestamp_deltas_scale must not be negative")
    if deltas.min() < 0:
        raise InvalidArgument(f"{what}: timestamp deltas must not be negative")
    scale = scale or 1  # unset (0): the deltas are plain nanoseconds
    n = len(deltas)
    # Exact in int64 unless the deltas are huge (then Python's integers do it).
    total = int(deltas[1:].sum()) if int(deltas.max()) <= INT64_MAX // n else sum(deltas[1:].tolist())
    first = item.start_timestamp + scale * int(deltas[0])
    last = first + scale * total
    check_time(last, what)
    if last - first > INT64_MAX:
        raise InvalidArgument(f"{what}: samples span more than 2^63 ns")
    check_time(first, what)
    deltas[0] = 0
    return TimestampedRun(first, last, scale, width, deltas, data)
