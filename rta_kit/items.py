"""Validation, timing, runs and encoding of the data items the writer stores.

A *run* is how the writer holds one channel's samples between flushes:
a ``PeriodicRun`` is regular samples (bursts that continue one another are
joined, so small bursts still make full items), a ``TimestampedRun`` is
samples with their time deltas. At a flush, runs are cut at chunk window
boundaries (``cut``) and each window's runs become one serialized list
(``window_payload``): sorted, joined where contiguous, and encoded as items of
at most ``TARGET_ITEM_SAMPLES`` samples. Runs that overlap (data written
twice, or interleaved) are first merged sample by sample, the later write
winning at equal times, so stored items never overlap.

Sample data is never touched sample by sample on the normal path: periodic
buffers are sliced as bytes and their items encoded with a handful of C-level
calls per run (``_periodic_entries``); timestamped runs are numpy arrays
(``rta_kit.timestamped``).
"""

import hashlib
import itertools
import struct
from itertools import accumulate

import numpy as np
from rta.model import data_pb2

from rta_core.errors import InvalidArgument
from rta_kit.samples import SampleParts, check_time, sample_width
from rta_kit.timestamped import TimestampedRun, timestamped_run
from rta_kit.varints import encode_varint

MAX_ITEM_SAMPLES = 10_000  # spec §8: an item must not exceed this
TARGET_ITEM_SAMPLES = 128  # ... and should hold up to this

MESSAGE_TYPES = {
    "timestamped": data_pb2.TimestampedData,
    "periodic": data_pb2.PeriodicData,
    "row": data_pb2.RowData,
    "events": data_pb2.Event,
}
LIST_FIELDS = {"timestamped": "timestamped_data", "periodic": "periodic_data", "row": "row_data", "events": "events"}
LIST_TYPES = {
    "timestamped": data_pb2.TimestampedDataList,
    "periodic": data_pb2.PeriodicDataList,
    "row": data_pb2.RowDataList,
    "events": data_pb2.EventsList,
}


def row_key(channel_ids):
    """A stable positive 62-bit key for a row data channel set (in buffer order)."""
    digest = hashlib.blake2b(",".join(str(c) for c in channel_ids).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def channel_key(kind, item):
    if kind in ("timestamped", "periodic"):
        return item.channel_id, [item.channel_id]
    if kind == "row":
        return row_key(item.channel_ids), list(item.channel_ids)
    return 0, []


# --- validation -----------------------------------------------------------------------------


def periodic_run(item):
    """``item`` (PeriodicData) validated, as a run; raises InvalidArgument."""
    data, n, interval, start = item.buffer, item.samples, item.interval, item.start_timestamp
    what = f"periodic data for channel {item.channel_id:x}"
    width = sample_width(len(data), n, what)
    check_time(start, what)
    if n > 1:
        if interval <= 0:
            raise InvalidArgument(f"{what}: interval must be positive")
        check_time(start + (n - 1) * interval, what)
    return PeriodicRun(start, interval, width, data, n)


def validate(kind, item):
    """Raise InvalidArgument for an item that cannot be stored."""
    if kind == "periodic":
        periodic_run(item)
    elif kind == "timestamped":
        timestamped_run(item)
    elif kind == "row":
        if not item.channel_ids:
            raise InvalidArgument("row data without channel_ids")
        if len(item.buffer) < len(item.channel_ids):
            raise InvalidArgument("row data buffer is shorter than one byte per channel")
        check_time(item.timestamp, "row data")
    elif kind == "events":
        check_time(item.timestamp, f"event {item.event_definition_id:x}")


# --- timing of single items -------------------------------------------------------------------


def _scale(item):
    # An unset scale (0) means the deltas are plain nanoseconds.
    return item.timestamp_deltas_scale or 1


def times(kind, item):
    """Sample times of a timestamped item (other kinds: not needed)."""
    scale = _scale(item)
    return list(accumulate((scale * d for d in item.timestamp_deltas), initial=item.start_timestamp))[1:]


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


# --- runs --------------------------------------------------------------------------------------


class PeriodicRun(SampleParts):
    """Regular samples of one channel: sample ``i`` at ``start + i * interval``, ``width`` bytes each."""

    __slots__ = ("start", "interval", "width", "parts", "samples")

    def __init__(self, start, interval, width, data, samples):
        self.start, self.interval, self.width, self.parts, self.samples = start, interval, width, [data], samples

    @property
    def end(self):
        return self.start + (self.samples - 1) * self.interval

    def absorb(self, other):
        """Append ``other`` if it continues this run (same width and interval, next sample time)."""
        if other.width != self.width:
            return False
        step = self.interval if self.samples > 1 else other.interval
        if step <= 0 or (other.samples > 1 and other.interval != step):
            return False
        if other.start != self.start + self.samples * step:
            return False
        self.interval = step
        self.parts += other.parts
        self.samples += other.samples
        return True

    def copy(self):
        """A run that can absorb others without changing this one."""
        out = PeriodicRun(self.start, self.interval, self.width, None, self.samples)
        out.parts = list(self.parts)
        return out

    def piece(self, i, j):
        """Samples ``[i, j)`` as a new run (no copy when that is all of them)."""
        if i == 0 and j == self.samples:
            return self
        w = self.width
        return PeriodicRun(self.start + i * self.interval, self.interval, w, self.data[i * w : j * w], j - i)

    def sample_times(self):
        return (
            range(self.start, self.start + self.samples * self.interval, self.interval)
            if self.samples > 1
            else [self.start]
        )


def run_of(kind, item):
    """A run of a validated item (periodic or timestamped)."""
    return periodic_run(item) if kind == "periodic" else timestamped_run(item)


def runs_of_list(kind, message):
    """The runs of a stored list message (periodic or timestamped), contiguous items joined."""
    runs = []
    for item in getattr(message, LIST_FIELDS[kind]):
        run = run_of(kind, item)
        if not runs or not runs[-1].absorb(run):
            runs.append(run)
    return runs


def cut(kind, run, span):
    """``run`` cut at multiples of ``span``: a list of (window start, piece)."""
    first = run.start // span
    if first == run.end // span:
        return [(first * span, run)]
    out = []
    if kind == "periodic":
        start, interval, n, i = run.start, run.interval, run.samples, 0
        while i < n:
            window = (start + i * interval) // span * span
            j = min(n, -((start - window - span) // interval))  # first sample at or after the window's end
            out.append((window, run.piece(i, j)))
            i = j
        return out
    return run.cut(span)


def split(kind, item, span=None, max_samples=TARGET_ITEM_SAMPLES):
    """``item`` cut into items of at most ``max_samples`` that never cross a multiple of ``span``."""
    if kind not in ("periodic", "timestamped"):
        return [item]
    pieces = cut(kind, run_of(kind, item), span) if span else [(None, run_of(kind, item))]
    message = LIST_TYPES[kind]()
    for _window, piece in pieces:
        entries = _periodic_entries if kind == "periodic" else _timestamped_entries
        message.MergeFromString(entries(item.channel_id, piece, max_samples))
    return list(getattr(message, LIST_FIELDS[kind]))


# --- one window's list -------------------------------------------------------------------------


def window_payload(kind, channel_id, runs, max_samples=TARGET_ITEM_SAMPLES):
    """The serialized list of one chunk window from its runs or items in write order.

    Returns ``(payload, first time, last time, samples)``. Periodic and
    timestamped runs are sorted, joined where contiguous, merged sample by
    sample where they overlap, and encoded as items of at most
    ``max_samples``. Rows are kept one per time (the later write wins);
    events are sorted by time, exact duplicates dropped.
    """
    if kind in ("periodic", "timestamped"):
        widths = {run.width for run in runs}
        if len(widths) > 1:
            raise InvalidArgument(f"{kind} data for channel {channel_id:x} mixes sample widths {sorted(widths)}")
        ordered = _joined(sorted(runs, key=lambda r: r.start))
        if any(b.start <= a.end for a, b in zip(ordered, ordered[1:])):
            ordered = _merged(kind, runs)
        if kind == "periodic":
            parts = [_periodic_entries(channel_id, run, max_samples) for run in ordered]
        else:
            parts = [part for run in ordered for part in run.list_entry_parts(channel_id, max_samples)]
        payload = parts[0] if len(parts) == 1 else b"".join(parts)  # one part: no copy (bytes-like)
        return payload, ordered[0].start, max(r.end for r in ordered), sum(r.samples for r in ordered)
    if kind == "row":
        latest = {row.timestamp: row for row in runs}
        items = [latest[t] for t in sorted(latest)]
        times = [row.timestamp for row in items]
    else:
        unique = {event.SerializeToString(deterministic=True): event for event in runs}
        items = sorted(unique.values(), key=lambda e: e.timestamp)
        times = [event.timestamp for event in items]
    message = LIST_TYPES[kind]()
    getattr(message, LIST_FIELDS[kind]).extend(items)
    return message.SerializeToString(), times[0], times[-1], len(items)


def _joined(runs):
    """Sorted runs with each one that continues its predecessor appended to it (copies, inputs untouched)."""
    out = []
    for run in runs:
        if out and out[-1].absorb(run):
            continue
        out.append(run.copy())
    return out


def _merged(kind, runs):
    """Overlapping runs (in write order) re-cut sample by sample into runs that do not overlap."""
    if kind == "timestamped":
        return [_merged_timestamped(runs)]
    on_grid = _merged_on_grid(runs)
    if on_grid is not None:
        return on_grid
    samples = {}
    for run in runs:
        data, w = run.data, run.width
        for i, t in enumerate(run.sample_times()):
            samples[t] = data[i * w : (i + 1) * w]  # a later write replaces an earlier one
    times = sorted(samples)
    width = runs[0].width
    out, i = [], 0
    while i < len(times):
        j = i + 1
        if j < len(times):
            step = times[j] - times[i]
            while j + 1 < len(times) and times[j + 1] - times[j] == step:
                j += 1
            j += 1
        else:
            step = runs[0].interval
        out.append(
            PeriodicRun(
                times[i],
                step if j - i > 1 else runs[0].interval,
                width,
                b"".join(samples[t] for t in times[i:j]),
                j - i,
            )
        )
        i = j
    return out


def _merged_timestamped(runs):
    """Timestamped runs (in write order) as one run, one sample per time, the later write winning."""
    width = runs[0].width
    times = np.concatenate([run.times() for run in runs])
    values = np.frombuffer(b"".join(run.data for run in runs), dtype=np.uint8).reshape(-1, width)
    # The last write of each time is the first one seen backwards; unique() sorts by time.
    unique, first_backwards = np.unique(times[::-1], return_index=True)
    keep = len(times) - 1 - first_backwards
    return TimestampedRun.from_times(unique, values[keep].tobytes(), width)


def _merged_on_grid(runs):
    """``_merged`` for periodic runs on one time grid (one interval, aligned starts), as byte copies.

    The usual overlap (a client re-sending data after a failure) takes this way;
    None when the runs are on different grids or the grid is much larger than
    the samples (sparse data), which the sample-by-sample merge handles.
    """
    multi = [r for r in runs if r.samples > 1]
    interval = multi[0].interval if multi else 0
    if interval <= 0 or any(r.interval != interval for r in multi) or len({r.start % interval for r in runs}) > 1:
        return None
    first, last = min(r.start for r in runs), max(r.end for r in runs)
    slots = (last - first) // interval + 1
    if slots > 4 * sum(r.samples for r in runs) + 1024:
        return None
    width = runs[0].width
    values, covered = bytearray(slots * width), bytearray(slots)
    for run in runs:  # in write order: a later write overwrites
        i = (run.start - first) // interval
        values[i * width : (i + run.samples) * width] = run.data
        covered[i : i + run.samples] = b"\x01" * run.samples
    out, i = [], 0
    while i < slots:
        i = covered.find(1, i)
        if i < 0:
            break
        j = covered.find(0, i)
        j = slots if j < 0 else j
        out.append(PeriodicRun(first + i * interval, interval, width, bytes(values[i * width : j * width]), j - i))
        i = j
    return out


# --- encoding ----------------------------------------------------------------------------------
#
# Periodic items are written in protobuf wire format directly: one list entry is
# tag 1 (length-delimited) holding channel_id (1, varint), start_timestamp
# (2, fixed64), interval (3, varint), samples (4, varint) and buffer (5, bytes),
# fields at their default value left out, exactly as protobuf serializes them
# (tests compare the bytes). Only the start time differs between the full items
# of a run, so they are produced with a few C-level operations per run.

_FIXED64 = struct.Struct("<q").pack


def _varint_field(tag, value):
    return bytes((tag,)) + encode_varint(value) if value else b""


def _periodic_entry(channel_id, start, interval, samples, data):
    body = b"".join(
        (
            _varint_field(0x08, channel_id),
            b"\x11" + _FIXED64(start) if start else b"",
            _varint_field(0x18, interval),
            _varint_field(0x20, samples),
            b"\x2a",
            encode_varint(len(data)),
            data,
        )
    )
    return b"\x0a" + encode_varint(len(body)) + body


def _periodic_entries(channel_id, run, max_samples):
    """Serialized PeriodicDataList entries for ``run`` cut into items of ``max_samples`` (the last may be short)."""
    n, interval, width, start = run.samples, run.interval, run.width, run.start
    data = run.data
    full = n // max_samples
    step, period = max_samples * width, max_samples * interval
    out = b""
    if full and (interval <= 0 or start <= 0 <= start + (full - 1) * period):
        full = 0  # a start time of exactly 0 is left out of its item: let the general encoder see to it
        for i in range(0, n, max_samples):
            j = min(n, i + max_samples)
            out += _periodic_entry(channel_id, start + i * interval, interval, j - i, data[i * width : j * width])
        return out
    if full:
        # Every full item is ``header`` + its samples; headers differ only in their 8 start-time
        # bytes, so the items are joined with a blank start time and the times are then written
        # in with 8 strided slice assignments (one per byte), whatever the number of items.
        middle = _varint_field(0x18, interval) + _varint_field(0x20, max_samples) + b"\x2a" + encode_varint(step)
        head = _varint_field(0x08, channel_id) + b"\x11"
        lead = b"\x0a" + encode_varint(len(head) + 8 + len(middle) + step) + head
        header = lead + bytes(8) + middle
        record = len(header) + step
        blocks = map(data.__getitem__, map(slice, range(0, full * step, step), range(step, full * step + 1, step)))
        out = bytearray(header).join(itertools.chain((b"",), blocks))  # one copy: header, block, header, ...
        starts = struct.pack(f"<{full}q", *range(start, start + full * period, period))
        for b in range(8):
            out[len(lead) + b :: record] = starts[b::8]
    if n > full * max_samples:
        out += _periodic_entry(channel_id, start + full * period, interval, n - full * max_samples, data[full * step :])
    return out


def _timestamped_entries(channel_id, run, max_samples):
    return run.list_entries(channel_id, max_samples)


def periodic_list_entries(channel_id, run, max_samples=TARGET_ITEM_SAMPLES):
    """``run`` (a ``PeriodicRun``) as serialized ``PeriodicDataList`` entries of ``max_samples`` samples.

    The encoder ``window_payload`` uses, for a caller (the adapter kit) that
    encodes many whole chunk windows of one run in a single call.
    """
    return _periodic_entries(channel_id, run, max_samples)
