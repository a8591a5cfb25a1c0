"""Samples (numpy arrays or rows) and events -> chunks on the stable grid, ready for the wire.

A ``Chunk`` is what a data service sends: one channel (row data: one channel
set; events: none), the times of its first and last sample, and ``payload``,
one serialized data list (uncompressed: ``rta_kit.service`` compresses it as
it frames it with ``wire.ChunkStreamWriter``).

Encoding is the server's own (``rta_kit.items``): samples become runs
(``PeriodicRun``, ``TimestampedRun``), runs are cut at the grid's window
boundaries and each window's runs become one list, as
``items.window_payload`` makes it (items of at most 128 samples, overlapping
samples merged, the later one winning); ``rta_kit.windows`` does it for many
windows at once. The same sample always lands in the same chunk with the same
start and end, whatever the request.

Two ways in:

- functions for one series: ``periodic_chunks`` (regular samples from a start
  time and interval), ``series_chunks`` (int64 ns times + values, periodic
  with the interval given or detected, or timestamped), ``event_chunks``,
  ``row_chunks``;
- ``ChunkingBuffer``: collect several channels from arrays or rows, then take
  every chunk (``chunks(start, end)``).

``start``/``end`` (ns, inclusive, None = open) keep only the chunks whose data
overlaps the request; chunks are always whole (a request is rounded outwards
to whole windows). Read at least ``grid.snap(start, end)`` from your store so
the chunks at the edges are complete.
"""

from collections import defaultdict

import numpy as np
from rta.model import data_pb2

from rta_kit import items as it
from rta_kit.datatypes import DEFAULT_TYPE, as_samples, sample_dtype
from rta_kit.grid import EVENTS_SPAN, ChunkGrid
from rta_kit.timestamped import TimestampedRun
from rta_kit.windows import MAX_LIST_BYTES, Chunk, encode_windows, timestamped_series_chunks, window_chunks

__all__ = [
    "MAX_LIST_BYTES",
    "Chunk",
    "ChunkingBuffer",
    "detect_interval",
    "event",
    "event_chunks",
    "periodic_chunks",
    "row_chunks",
    "series_chunks",
]

KINDS = ("timestamped", "periodic", "row", "events")


# --- one series -----------------------------------------------------------------------------


def periodic_chunks(channel, start_time, interval, values, data_type=DEFAULT_TYPE, grid=None, start=None, end=None):
    """Chunks of regular samples: ``values[i]`` at ``start_time + i * interval`` ns.

    ``grid`` defaults to ``ChunkGrid.for_interval(interval)``; ``data_type`` is
    the channel's sample type (``f64`` ... see ``rta_kit.datatypes``).
    """
    samples = as_samples(values, data_type)
    grid = grid or ChunkGrid.for_interval(interval, samples.itemsize)
    runs = _periodic_block(start_time, interval, samples, grid, start, end)
    return window_chunks("periodic", channel, runs, grid, start, end)


def series_chunks(
    channel, times, values, kind="periodic", interval=None, data_type=DEFAULT_TYPE, grid=None, start=None, end=None
):
    """Chunks of samples at int64 ns ``times`` (sorted, no duplicates) with ``values``.

    ``kind="periodic"``: samples on a regular ``interval`` (detected when None:
    the most common gap); a gap that is not the interval starts a new run (each
    run becomes its own items), so use this for regular data with holes.
    ``kind="timestamped"``: any times (deltas stored per sample). ``grid``
    defaults to one for the interval (periodic) or the series' mean interval
    (timestamped: pass a grid when ``times`` are only part of the series, so
    chunks stay the same between requests).
    """
    times, samples = _series(times, values, data_type)
    if kind == "periodic" and interval is None:
        interval = detect_interval(times)
    if grid is None:
        grid = (
            ChunkGrid.for_interval(interval, samples.itemsize)
            if kind == "periodic"
            else ChunkGrid.for_times(times, samples.itemsize)
        )
    times, samples = _requested(times, samples, grid, start, end)
    if kind == "timestamped" and len(times):
        chunks = timestamped_series_chunks(channel, times, samples, grid.span)
        return [c for c in chunks if (start is None or c.end >= start) and (end is None or c.start <= end)]
    return window_chunks(kind, channel, _runs(kind, times, samples, interval), grid, start, end)


def detect_interval(times):
    """The interval of regular ``times``: their one gap, else the most common one (smallest on a tie).

    None for fewer than two samples.
    """
    if len(times) < 2:
        return None
    gaps = np.diff(times)
    first = gaps[0]
    if first > 0 and (gaps == first).all():
        return int(first)
    values, counts = np.unique(gaps[gaps > 0], return_counts=True)
    if not len(values):
        raise ValueError("sample times do not increase")
    return int(values[np.argmax(counts)])


def event(timestamp, event_id, app_name="", status_text="", values=()):
    """An ``rta.model.data.Event``: ``values`` are its raw data (doubles)."""
    return data_pb2.Event(
        event_definition_id=event_id,
        app_name=app_name,
        timestamp=timestamp,
        status_text=status_text,
        raw_data=[float(v) for v in values],
    )


def event_chunks(events, grid=None, start=None, end=None):
    """``EventsList`` chunks of ``events``: ``Event`` messages or ``(time, event id, app, status, values)`` tuples.

    Events are sorted by time and exact duplicates dropped; ``grid`` defaults to
    100 s windows.
    """
    grid = grid or ChunkGrid(EVENTS_SPAN)
    by_window = defaultdict(list)
    for item in events:
        message = item if isinstance(item, data_pb2.Event) else event(*item)
        by_window[grid.window_start(message.timestamp)].append(message)
    return encode_windows("events", 0, (), by_window, start, end, grid.span)


def row_chunks(channel_ids, times, columns, data_types=None, grid=None, start=None, end=None):
    """``RowDataList`` chunks: one ``RowData`` per time holding one sample of each channel, in order.

    ``columns`` holds one array of values per channel of ``channel_ids``;
    ``data_types`` one type per channel (default ``f64`` each). ``grid``
    defaults to one for the rows' mean interval.
    """
    channel_ids = tuple(int(c) for c in channel_ids)
    if len(columns) != len(channel_ids):
        raise ValueError(f"{len(columns)} columns for {len(channel_ids)} channels")
    types = data_types or [DEFAULT_TYPE] * len(channel_ids)
    times = np.asarray(times, dtype=np.int64)
    arrays = [as_samples(column, t) for column, t in zip(columns, types)]
    if any(len(a) != len(times) for a in arrays):
        raise ValueError("every column needs one value per time")
    record = np.dtype([(f"c{i}", a.dtype) for i, a in enumerate(arrays)])  # packed: no padding
    table = np.empty(len(times), dtype=record)
    for i, array in enumerate(arrays):
        table[f"c{i}"] = array
    grid = grid or ChunkGrid.for_times(times, record.itemsize)
    by_window = defaultdict(list)
    buffers = table.tobytes()
    width = record.itemsize
    for i, t in enumerate(times.tolist()):
        row = data_pb2.RowData(channel_ids=channel_ids, timestamp=t, buffer=buffers[i * width : (i + 1) * width])
        by_window[grid.window_start(t)].append(row)
    return encode_windows("row", it.row_key(channel_ids), channel_ids, by_window, start, end, grid.span)


# --- several channels ----------------------------------------------------------------------


class ChunkingBuffer:
    """Collects samples of several channels, then chunks them all (``chunks``).

    Each channel keeps the kind, sample type and grid of its first ``add_*``
    call; its samples may come in several calls, in any order (overlapping
    samples: the later call wins, as in the store). ``grid`` is used for every
    channel if given, else each channel's own (``ChunkGrid.for_interval``).
    """

    def __init__(self, grid=None):
        self.grid = grid
        self._channels = {}  # channel -> [kind, dtype, grid, runs]

    def add_periodic(self, channel, start_time, interval, values, data_type=DEFAULT_TYPE, grid=None):
        """Regular samples: ``values[i]`` at ``start_time + i * interval``."""
        samples = as_samples(values, data_type)
        entry = self._entry(channel, "periodic", samples.dtype, grid, interval)
        entry[3].append(it.PeriodicRun(start_time, interval, samples.itemsize, _bytes(samples), len(samples)))

    def add_series(self, channel, times, values, kind="periodic", interval=None, data_type=DEFAULT_TYPE, grid=None):
        """Samples at int64 ns ``times`` (as ``series_chunks``)."""
        times, samples = _series(times, values, data_type)
        if kind == "periodic" and interval is None:
            interval = detect_interval(times)
        if grid is None and self.grid is None and kind == "timestamped" and channel not in self._channels:
            grid = ChunkGrid.for_times(times, samples.itemsize)
        entry = self._entry(channel, kind, samples.dtype, grid, interval)
        entry[3].extend(_runs(kind, times, samples, interval))

    def add_rows(self, rows, channels, kind="periodic", interval=None, data_types=None, time_scale=1):
        """Rows ``(time, value of channels[0], value of channels[1], ...)``; a None value is a missing sample.

        ``time_scale`` multiplies the times into ns (1000000 for ms). Each
        channel becomes a series of ``kind`` (see ``add_series``).
        """
        table = list(rows)
        if not table:
            return
        types = data_types or [DEFAULT_TYPE] * len(channels)
        columns = list(zip(*table))
        if len(columns) != len(channels) + 1:
            raise ValueError(f"rows of {len(columns)} values for a time and {len(channels)} channels")
        times = np.asarray(columns[0], dtype=np.int64) * time_scale
        for channel, column, data_type in zip(channels, columns[1:], types):
            present = np.fromiter((v is not None for v in column), dtype=bool, count=len(column))
            if not present.any():
                continue
            values = np.asarray([v for v in column if v is not None], dtype=sample_dtype(data_type))
            self.add_series(channel, times[present], values, kind, interval, data_type)

    def channels(self):
        return sorted(self._channels)

    def chunks(self, start=None, end=None):
        """Every channel's chunks overlapping ``[start, end]``: channel by channel, each in time order."""
        out = []
        for channel in sorted(self._channels):
            kind, _dtype, grid, runs = self._channels[channel]
            out += window_chunks(kind, channel, runs, grid, start, end)
        return out

    def clear(self):
        self._channels.clear()

    def _entry(self, channel, kind, dtype, grid, interval):
        if kind not in ("periodic", "timestamped"):
            raise ValueError(f"kind must be periodic or timestamped, not {kind!r}")
        entry = self._channels.get(channel)
        if entry is None:
            grid = grid or self.grid or ChunkGrid.for_interval(interval, dtype.itemsize)
            entry = self._channels[channel] = [kind, dtype, grid, []]
        elif entry[0] != kind or entry[1] != dtype:
            raise ValueError(f"channel {channel:x} holds {entry[0]} {entry[1]} samples, not {kind} {dtype}")
        elif grid is not None and grid != entry[2]:
            raise ValueError(f"channel {channel:x} is chunked on {entry[2]}, not {grid}")
        return entry


# --- internals -------------------------------------------------------------------------------


def _bytes(samples):
    """The samples' bytes without a copy (slicing it slices bytes, as ``items`` expects)."""
    return memoryview(samples).cast("B")


def _series(times, values, data_type):
    times = np.ascontiguousarray(times, dtype=np.int64)
    samples = as_samples(values, data_type)
    if times.ndim != 1 or samples.ndim != 1 or len(times) != len(samples):
        raise ValueError(f"{len(times)} times for {len(samples)} values (both one-dimensional)")
    return times, samples


def _requested(times, samples, grid, start, end):
    """The samples within the request rounded outwards to whole windows (all when unbounded)."""
    if start is None and end is None:
        return times, samples
    low, high = grid.snap(start, end)
    i, j = np.searchsorted(times, low, side="left"), np.searchsorted(times, high, side="right")
    return times[i:j], samples[i:j]


def _periodic_block(start_time, interval, samples, grid, start, end):
    """One regular block as runs, limited to the whole windows the request overlaps."""
    n = len(samples)
    if not n:
        return []
    if n > 1 and interval <= 0:
        raise ValueError("interval must be positive")
    i, j = 0, n
    if (start is not None or end is not None) and n > 1:
        low, high = grid.snap(start, end)
        i = max(0, -(-(low - start_time) // interval))
        j = min(n, (high - start_time) // interval + 1)
        if i >= j:
            return []
    data = _bytes(samples[i:j])
    return [it.PeriodicRun(start_time + i * interval, interval, samples.itemsize, data, j - i)]


def _runs(kind, times, samples, interval):
    """Runs of sorted ``times`` and their ``samples``."""
    if not len(times):
        return []
    data, width = _bytes(samples), samples.itemsize
    if kind == "timestamped":
        return [TimestampedRun.from_times(times, data, width)]
    if kind != "periodic":
        raise ValueError(f"kind must be periodic or timestamped, not {kind!r}")
    if len(times) == 1:
        return [it.PeriodicRun(int(times[0]), interval or 0, width, data, 1)]
    gaps = np.diff(times)
    if gaps.min() <= 0:
        raise ValueError("sample times must increase")
    if interval is None or interval <= 0:
        raise ValueError("interval must be positive")
    breaks = np.flatnonzero(gaps != interval) + 1
    edges = [0, *breaks.tolist(), len(times)]
    first = times[edges[:-1]].tolist()
    return [
        it.PeriodicRun(t, interval, width, data[a * width : b * width], b - a)
        for t, a, b in zip(first, edges, edges[1:])
    ]
