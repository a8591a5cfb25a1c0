"""Series stores as data sources: the common rules every built-in adapter follows (issue: serve in place).

A store says what it holds and reads columns; ``SeriesSource`` does the rest:

- **kinds**: a timestamped request gets every served field as timestamped
  data; a periodic request gets periodic items for *regular* fields only (the
  field mapping's ``interval`` property, else an interval detected from the
  start of the data: every gap a whole multiple of the most common one, at
  least half of them equal to it) and
  nothing for irregular ones; row requests get nothing. Samples go out as f64
  unless the field mapping's ``target_channel_data_type`` says otherwise.
- **stable chunks**: each field is cut on its own grid
  (``rta_kit.grid.ChunkGrid.for_interval`` of its interval, or of the typical
  gap at the start of its data for irregular fields), which depends only on
  the data, never on the request; requests are read rounded outwards to whole
  windows, so a sample is in the same chunk whatever the bounds.
- **bounded memory**: a request is read in slices of whole 100 s windows
  (every grid's windows divide 100 s), about ``SLICE_SAMPLES`` samples per
  field each, so an hour at 10 kHz never sits in memory at once; the next
  ``READS_AHEAD`` slices are read in reader threads while one is cut into
  chunks (the stores' readers release the GIL: both cores read).
- **missing samples**: NaN in a float column is "no sample at this time"
  (SQL NULL, an absent Parquet value): each field's chunks hold only its
  present samples.

A subclass implements::

    name                                    the data source name bindings use
    reads_by_rate                           optional: True reads each rate's fields apart
    store_fields(identity, mapping)         [StoreField], NotFound for an identity it refuses
    time_range(identity, mapping, group)    (first, last) ns inclusive, or None without data
    read(identity, mapping, group, names, low, high)
                                            (times, {name: values}): int64 ns sorted, inclusive bounds
    event_rows(identity, mapping, start, end)  optional: [(time, event name, status, {field: value})]
    check()                                 raise when the store cannot be reached (/health)

``prepare(identity)`` reads the schema mapping (in the request's thread: the
database is Django's); the ``Prepared`` it returns yields chunks from any
thread.
"""

import functools
import itertools
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from data_app.sources import mappings
from rta_kit.chunking import detect_interval, event, event_chunks, series_chunks
from rta_kit.datatypes import sample_dtype
from rta_kit.grid import INT64_MAX, INT64_MIN, ChunkGrid

SLICE_ALIGN = 100 * 1_000_000_000  # every grid span divides 100 s: slices of whole windows for every field
SLICE_SAMPLES = 1 << 20  # samples per field a slice aims at
PROBE_SPANS = (10_000_000, 1_000_000_000, 100_000_000_000, 10_000_000_000_000)  # ns read to detect a rate
PROBE_SAMPLES = 64  # samples a probe wants before it judges a field's rate
PROBES_REMEMBERED = 4096  # fields whose probed rate a source remembers
READS_AHEAD = 2  # slices of a request read in reader threads while the one before is cut into chunks
READ_AHEAD_BYTES = 256 << 20  # ... unless the slices held at once would exceed this (see _reads_ahead)
# Reader threads of every source (bounded: many requests share them; a reader never waits on another).
_READERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="source-read")


@dataclass(frozen=True)
class StoreField:
    """A field of the store: ``group`` names what is read together (a table, a measurement, a file)."""

    name: str
    group: object = None
    channel: int | None = None  # the mapped field this is (two mapped fields may share a name, e.g. two tables)


@dataclass(frozen=True)
class Plan:
    """How one served field is cut: its mapping, store group, interval (None: irregular) and grid."""

    field: mappings.FieldMap
    group: object
    interval: int | None
    grid: ChunkGrid


class SeriesSource:
    """Base class of series stores; see the module documentation."""

    name = ""
    # Whether fields of one rate are read apart from others of the group: for stores whose reads cost per
    # field, not per row, and answer rows (a union of times: InfluxDB), where slower fields only add holes.
    reads_by_rate = False
    irregular_interval = None  # ns: the grid of irregular fields, when the store knows its rate (a setting)

    @functools.cached_property
    def probes(self):
        return _Remembered(PROBES_REMEMBERED)

    def prepare(self, identity):
        return Prepared(self, identity, mappings.load(self.name, identity))

    def event_rows(self, identity, mapping, start, end):
        return []

    def check(self):
        pass

    def close(self):
        pass


class Prepared:
    """One identity of a source with its mapping: ``chunks(kind, channels, start, end)``."""

    def __init__(self, source, identity, mapping):
        self.source, self.identity, self.mapping = source, identity, mapping

    def chunks(self, kind, channels=None, start=None, end=None):
        """The ``rta_kit.chunking.Chunk``s of ``kind`` for ``channels`` (a ChannelSet; None: all)."""
        if (start is not None and start > INT64_MAX) or (end is not None and end < INT64_MIN):
            return  # no data time is that late (or early): nothing to ask a store
        start = None if start is None else max(start, INT64_MIN)  # what a store's query can hold
        end = None if end is None else min(end, INT64_MAX)
        if kind == "events":
            yield from self._events(start, end)
            return
        if kind not in ("periodic", "timestamped"):
            return
        source, identity, mapping = self.source, self.identity, self.mapping
        store = source.store_fields(identity, mapping)
        by_name, by_channel = {}, {f.channel: f.group for f in store if f.channel is not None}
        for f in store:
            by_name.setdefault(f.name, f.group)
        served = [
            (by_channel.get(f.channel, by_name.get(f.name)), f)
            for f in mappings.served_fields(mapping, [f.name for f in store])
            if channels is None or f.channel in channels
        ]
        served.sort(key=lambda pair: repr(pair[0]))
        for group, pairs in groupby(served, key=lambda pair: pair[0]):
            fields = [f for _, f in pairs]
            yield from self._group_chunks(kind, group, fields, start, end)

    def _group_chunks(self, kind, group, fields, start, end):
        source, identity, mapping = self.source, self.identity, self.mapping
        extent = source.time_range(identity, mapping, group)
        if extent is None:
            return
        plans = [p for p in self._plans(group, fields, extent) if kind == "timestamped" or p.interval]
        if not plans:
            return
        first = max(extent[0], INT64_MIN if start is None else start)
        last = min(extent[1], INT64_MAX if end is None else end)
        if first > last:
            return
        rates = {}
        for plan in plans:
            rates.setdefault(plan.interval if source.reads_by_rate else 0, []).append(plan)
        for same_rate in rates.values():
            yield from self._read_chunks(kind, group, same_rate, first, last)

    def _read_chunks(self, kind, group, plans, first, last):
        source, identity, mapping = self.source, self.identity, self.mapping
        low = min(p.grid.snap(first, last)[0] for p in plans)
        high = max(p.grid.snap(first, last)[1] for p in plans)
        names = [p.field.name for p in plans]
        width = _slice_width(plans)
        read = lambda a, b: source.read(identity, mapping, group, names, a, b)  # noqa: E731
        reads = _read_ahead(read, _slices(low, high, width), _reads_ahead(plans, width))
        for times, columns in reads:
            if not len(times):
                continue
            for plan in plans:
                t, v = present_samples(times, columns.get(plan.field.name))
                if not len(t):
                    continue
                f = plan.field
                interval = plan.interval if kind == "periodic" else None
                yield from series_chunks(f.channel, t, v, kind, interval, f.data_type, plan.grid, first, last)

    def _plans(self, group, fields, extent):
        """A ``Plan`` per field: declared intervals first, else one probe read of the data's start."""
        undeclared = [f.name for f in fields if f.interval is None]
        probed = self._probe(group, undeclared, extent) if undeclared else {}
        plans = []
        for f in fields:
            interval, typical = (f.interval, f.interval) if f.interval else probed.get(f.name, (None, None))
            if interval is None and self.source.irregular_interval:
                typical = self.source.irregular_interval
            grid = ChunkGrid.for_interval(typical, sample_dtype(f.data_type).itemsize)
            plans.append(Plan(f, group, interval, grid))
        return plans

    def _probe(self, group, names, extent):
        """``{name: (regular interval or None, typical gap or None)}`` from the first samples of each field.

        Remembered per (identity, group, field, extent): the start of a series does not change while its
        extent does not, and a request (an admin plot reads a hundred) need not probe again.
        """
        cache, key = self.source.probes, (self.identity, repr(group), extent)
        known = {name: cache.get((*key, name)) for name in names}
        missing = [name for name, rate in known.items() if rate is None]
        if missing:
            for name, rate in self._probe_store(group, missing, extent).items():
                known[name] = cache.put((*key, name), rate)
        return known

    def _probe_store(self, group, names, extent):
        source, identity, mapping = self.source, self.identity, self.mapping
        found = {}
        for span in PROBE_SPANS:
            high = min(extent[1], extent[0] + span)
            times, columns = source.read(identity, mapping, group, names, extent[0], high)
            found = {name: _rate(*present_samples(times, columns.get(name))) for name in names}
            enough = all(counts >= PROBE_SAMPLES for _, _, counts in found.values())
            if enough or high >= extent[1]:
                break
        return {name: (regular, typical) for name, (regular, typical, _) in found.items()}

    def _events(self, start, end):
        rows = self.source.event_rows(self.identity, self.mapping, start, end)
        by_name = {m["source_event"]: m for m in self.mapping.events}
        events = []
        for time, name, status, values in rows:
            mapped = by_name.get(name)
            if mapped is not None:
                data = [values[c] for c in mapped["source_event_data_fields"] if c in values]
                events.append(event(time, mapped["target_event_id"], mapped["target_event_app"], status, data))
            elif not by_name and (number := _event_number(name)) is not None:
                events.append(event(time, number, self.source.name, status, list(values.values())))
        if events:
            yield from event_chunks(events, start=start, end=end)


def present_samples(times, values):
    """Times and values where a sample is present (not NaN); none when ``values`` is None (no such column)."""
    if values is None:
        return times[:0], np.empty(0)
    values = np.asarray(values)
    if values.dtype.kind == "f" and np.isnan(np.add.reduce(values)):  # a sum without NaN: no NaN (cheap check)
        present = ~np.isnan(values)
        return times[present], values[present]
    elif values.dtype.kind not in "fiub":  # numbers stay as they are (not copied); anything else as f64
        values = values.astype(np.float64)
    return times, values


def _rate(times, values):
    """``(regular interval or None, typical gap or None, samples)`` of one field's probe."""
    gaps = _gaps(times)
    if gaps is None:
        return None, None, len(times)
    return _regular(times, gaps), int(np.median(gaps)), len(times)


def regular_interval(times):
    """The interval of sorted ``times`` when they are regular, else None (the rule indexers use too).

    Regular: sampled on one clock, holes allowed (every gap a whole multiple of the most common one), and
    mostly without holes (at least half the gaps equal to it).
    """
    gaps = _gaps(times)
    return None if gaps is None else _regular(times, gaps)


def _gaps(times):
    """The gaps between ``times``, or None when there are fewer than two or they do not increase."""
    if len(times) < 2:
        return None
    gaps = np.diff(times)
    return None if (gaps <= 0).any() else gaps


def _regular(times, gaps):
    interval = detect_interval(times)
    on_clock = not (gaps % interval).any() and np.count_nonzero(gaps == interval) * 2 >= len(gaps)
    return interval if on_clock else None


def _typical_gap(plan):
    """ns between a field's samples: its interval, or about a thousandth of its chunk span (irregular)."""
    return plan.interval or plan.grid.span // 1000 or 1


def _slice_width(plans):
    fastest = min(_typical_gap(p) for p in plans)
    windows = max(1, SLICE_SAMPLES * fastest // SLICE_ALIGN)
    return windows * SLICE_ALIGN


def _reads_ahead(plans, width):
    """Slices to read ahead: ``READS_AHEAD``, fewer when slices are large (a wide table of fast fields: a slice
    cannot be less than 100 s), so a request holds about ``READ_AHEAD_BYTES`` at most."""
    rows = width // min(_typical_gap(p) for p in plans) + 1
    per_slice = 8 * (rows + sum(width // _typical_gap(p) + 1 for p in plans))  # times, then each field's values
    return max(0, min(READS_AHEAD, READ_AHEAD_BYTES // per_slice - 1))


def _slices(low, high, width):
    """``(a, b)`` inclusive pieces of ``[low, high]`` cut at multiples of ``width``."""
    a = low
    while a <= high:
        b = min(high, (a // width + 1) * width - 1)
        yield a, b
        if b >= high:
            return
        a = b + 1


def _read_ahead(read, slices, ahead):
    """``read(a, b)`` of each of ``slices`` in order: the first in this thread, up to ``ahead`` of the next
    meanwhile in reader threads (stores read without the GIL: two cores read while one cuts chunks)."""
    slices = iter(slices)
    first = next(slices, None)
    if first is None:
        return
    pending = deque(_READERS.submit(read, *piece) for piece in itertools.islice(slices, ahead))
    try:
        yield read(*first)
        while True:
            if (piece := next(slices, None)) is not None:
                pending.append(_READERS.submit(read, *piece))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()  # a read already running finishes in its thread, its result dropped


def _event_number(name):
    """An event name that is itself an id (decimal or 0x hex), as with no event mappings."""
    try:
        return int(str(name), 0)
    except ValueError:
        return None


class _Remembered:
    """A small thread-safe LRU map (requests of one source run in several threads)."""

    def __init__(self, size):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value):
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
