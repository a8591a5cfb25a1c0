"""Buffers written items and flushes them into stable, time-aligned chunks.

Buffering: items are validated and held per (kind, channel) as runs
(``items.PeriodicRun``/``TimestampedRun``; rows and events as messages), within
a memory budget. A flush happens

- when asked (a flush marker, the end of a stream): everything;
- when the buffered bytes pass half the budget: every window but the newest
  of each channel (more data for it is probably on its way) is handed to a
  background flush, which encodes, compresses, appends and indexes it while
  the stream goes on (LZ4, file and database I/O release the GIL). Two
  flushes may run at once: the second encodes and compresses its windows
  while the first writes, then stores them after it, in order (merging into
  any chunk the first wrote). A third waits, in the stream's thread, so a
  gRPC stream is not read meanwhile and flow control holds the client back.
  If the buffer still exceeds the whole budget, everything is flushed there
  and then. Memory stays within about twice the budget;
- when data has waited longer than the age threshold (``flush_age`` seconds,
  ``RTA_DATA_FLUSH_AGE``, checked as items arrive; in the background too):
  every channel holding such data, so a long stream without flush markers
  still becomes readable.

A background flush that fails makes the next ``add()`` or ``flush()`` raise
its error (the stream fails; what it had not acknowledged is lost, as with
any failed stream).

Chunk span rule: each (identity, kind, channel) gets one span from ``SPANS``
the first time it is flushed: the largest of 1, 2, 5, 10, 20, 50, 100 s whose
expected list size at the observed rate (buffered serialized bytes / buffered
time extent) stays within ``TARGET_LIST_BYTES`` (64 KiB); 1 s when even that
is exceeded, unless a 1 s list would pass ``MAX_SPAN_LIST_BYTES`` (a channel
of several MHz), then the largest of 0.5, 0.2, 0.1 s keeping under it (the
4 MiB hard limit of a list needs the margin); 10 s when the buffer has no
time extent to measure. The span is recorded on every index row and reused
for all later writes of the channel, so chunk windows ``[k*span, (k+1)*span)``
are stable whatever the request or write pattern, and never overlap.

Data landing in a window that already has a chunk (late or back-filled data,
or an earlier flush mid-window) is merged: the chunk is re-read, merged in
time order (overlapping samples: the later write wins, see
``items.window_payload``), appended again and its index row updated in the
same transaction (the old bytes become segment garbage for compaction).
"""

import json
import logging
import threading
import time
from collections import defaultdict

from django.conf import settings
from django.db import IntegrityError, connection

from data_app.metrics import FLUSH_SECONDS, STORED_BYTES, STORED_CHUNKS
from data_app.models import Chunk
from data_app.store import segments, storage
from rta_core.errors import InvalidArgument, excerpt
from rta_kit import items as it
from rta_kit import wire

log = logging.getLogger(__name__)

SECOND = 1_000_000_000
SPANS = [s * SECOND for s in (1, 2, 5, 10, 20, 50, 100)]
SUBSECOND_SPANS = [SECOND // 10, SECOND // 5, SECOND // 2]
DEFAULT_SPAN = 10 * SECOND
TARGET_LIST_BYTES = 64 * 1024
MAX_SPAN_LIST_BYTES = 1024 * 1024
MAX_LIST_BYTES = 4 * 1024 * 1024  # spec §8: a list must not exceed this
DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024
DEFAULT_FLUSH_AGE = 10.0
# Serialized bytes an item adds beyond its samples (tags, times, lengths): for the budget and rates.
_ITEM_OVERHEAD = 24


def choose_span(total_bytes, extent_ns):
    if extent_ns <= 0:
        return DEFAULT_SPAN
    rate = total_bytes * SECOND / extent_ns  # bytes per second
    if rate > MAX_SPAN_LIST_BYTES:
        fitting = [s for s in SUBSECOND_SPANS if rate * s / SECOND <= MAX_SPAN_LIST_BYTES]
        return fitting[-1] if fitting else SUBSECOND_SPANS[0]
    best = SPANS[0]
    for span in SPANS:
        if rate * span / SECOND <= TARGET_LIST_BYTES:
            best = span
    return best


_COLUMNS = (
    "identity",
    "kind",
    "channel",
    "channel_ids",
    "window_start",
    "span",
    "start_time",
    "end_time",
    "file",
    "offset",
    "packed_length",
    "unpacked_length",
    "sample_count",
    "compression",
)


def _insert_chunks(rows):
    """Insert index rows (tuples in ``_COLUMNS`` order).

    On PostgreSQL with COPY: about a thousand chunks a second are indexed at full
    write speed, and ``bulk_create`` spends far longer preparing every field of
    every row in Python (and psycopg parsing a statement with thousands of
    placeholders) than PostgreSQL takes to store them.
    """
    if connection.vendor != "postgresql":
        Chunk.objects.bulk_create([Chunk(**dict(zip(_COLUMNS, values))) for values in rows])
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(Chunk._meta.get_field(name).column) for name in _COLUMNS)
    # The raw psycopg cursor's errors become Django's (IntegrityError: another writer's window).
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {quote(Chunk._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for values in rows:
                copy.write_row(values[:3] + (json.dumps(values[3]),) + values[4:])


# What a merge changes in a chunk's index row (its window and channels stay).
_REPOINTED = (
    "start_time",
    "end_time",
    "file",
    "offset",
    "packed_length",
    "unpacked_length",
    "sample_count",
    "compression",
)


def _repoint_chunks(rows):
    """Point merged chunks' index rows at their new bytes: ``rows`` are (pk, values in ``_COLUMNS`` order).

    One prepared UPDATE per row, sent together (psycopg pipelines ``executemany``):
    ``bulk_update`` builds a CASE expression per column over every row, which costs
    far more in Python than the updates cost PostgreSQL.
    """
    positions = [_COLUMNS.index(name) for name in _REPOINTED]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(Chunk._meta.get_field(name).column)} = %s" for name in _REPOINTED)
    sql = f"UPDATE {quote(Chunk._meta.db_table)} SET {assignments} WHERE {quote(Chunk._meta.pk.column)} = %s"
    with connection.cursor() as cursor:
        cursor.executemany(sql, [tuple(values[i] for i in positions) + (pk,) for pk, values in rows])


def _setting(name, default):
    value = getattr(settings, name, None)
    return default if value is None else value


class _Buffer:
    """One channel's unflushed data: runs (rows/events: messages), their bytes, extent and age."""

    __slots__ = ("channel_ids", "runs", "bytes", "start", "end", "since")

    def __init__(self, channel_ids):
        self.channel_ids, self.runs, self.bytes = channel_ids, [], 0
        self.start = self.end = self.since = None


class ChunkWriter:
    """Collects the items of one data identity; ``flush()`` makes them durable and readable.

    ``budget_bytes`` bounds the buffered (serialized) bytes, ``flush_age`` the
    seconds data may wait (0: no age threshold); both default to the
    ``RTA_DATA_BUFFER_BYTES`` / ``RTA_DATA_FLUSH_AGE`` settings. ``lz4_level``
    (``RTA_DATA_LZ4_LEVEL``) 0 is LZ4's fast mode, 1-12 its high-compression
    levels (same block format, smaller and slower to write). ``on_stored(first, last)``
    runs after each flush's chunks are stored and indexed, before the flush returns
    (the sink extends the session's time range there: the store knows no sessions).
    """

    def __init__(
        self,
        identity,
        budget_bytes=None,
        compression=wire.COMPRESSION_LZ4,
        flush_age=None,
        lz4_level=None,
        on_stored=None,
    ):
        self.identity = identity
        self.on_stored = on_stored  # called with (first, last) data time once a flush's windows are stored
        self.budget_bytes = (
            _setting("RTA_DATA_BUFFER_BYTES", DEFAULT_BUDGET_BYTES) if budget_bytes is None else budget_bytes
        )
        self.flush_age = float(_setting("RTA_DATA_FLUSH_AGE", DEFAULT_FLUSH_AGE) if flush_age is None else flush_age)
        self.lz4_level = int(_setting("RTA_DATA_LZ4_LEVEL", 0) if lz4_level is None else lz4_level)
        self.compression = compression
        self.segment = segments.segment_name(identity)
        self._buffers = {}
        self._buffered_bytes = 0
        self._spans = {}
        self._age_due = None  # monotonic time at which the oldest buffered data reaches flush_age
        self._flush_at = self.budget_bytes // 2  # buffered bytes that start a background flush
        self._background = None  # the thread of the background flush under way
        self._failure = None  # ... and its exception, raised by the next add() or flush()

    # --- buffering -----------------------------------------------------------------------

    def add(self, kind, item):
        """Validate and buffer one item (raises InvalidArgument; nothing is buffered then)."""
        if self._failure is not None:
            self.wait()  # a background flush failed: the stream cannot go on
        if kind in ("periodic", "timestamped"):
            self.add_run(kind, item.channel_id, it.run_of(kind, item))
            return
        if kind in ("row", "events"):
            it.validate(kind, item)
            key, channel_ids = it.channel_key(kind, item)
            buf = self._buffers.get((kind, key))
            if buf is None:
                buf = self._buffers[(kind, key)] = _Buffer(channel_ids)
            buf.runs.append(item)
            size = item.ByteSize() + 4
            start = end = item.timestamp
        else:
            raise InvalidArgument(f"unknown data kind {excerpt(kind)}")
        self._buffered(buf, size, start, end)

    def add_run(self, kind, channel, run):
        """Buffer a validated run (``items.PeriodicRun``/``TimestampedRun``) of ``channel``."""
        if self._failure is not None:
            self.wait()
        buf = self._buffers.get((kind, channel))
        if buf is None:
            buf = self._buffers[(kind, channel)] = _Buffer([channel])
        elif buf.runs and buf.runs[-1].width != run.width:
            raise InvalidArgument(
                f"{kind} data for channel {channel:x}: sample width {run.width} differs from the "
                f"{buf.runs[-1].width} bytes of earlier samples"
            )
        if not buf.runs or not buf.runs[-1].absorb(run):
            buf.runs.append(run)
        size = len(run.parts[0]) + _ITEM_OVERHEAD * (run.samples // it.TARGET_ITEM_SAMPLES + 1)
        if kind == "timestamped":
            size += 2 * run.samples  # deltas, about two bytes each
        self._buffered(buf, size, run.start, run.end)

    def _buffered(self, buf, size, start, end):
        """Account for ``size`` bytes just added to ``buf``; flush if a threshold is passed."""
        buf.bytes += size
        self._buffered_bytes += size
        buf.start = start if buf.start is None or start < buf.start else buf.start
        buf.end = end if buf.end is None or end > buf.end else buf.end
        now = time.monotonic()
        if buf.since is None:
            buf.since = now
            if self.flush_age > 0 and self._age_due is None:
                self._age_due = now + self.flush_age
        if self._buffered_bytes > self._flush_at:
            self._flush(complete_windows_only=True, background=True)
            if self._buffered_bytes > self.budget_bytes:
                self._flush()
        elif self._age_due is not None and now >= self._age_due:
            self._flush(older_than=now - self.flush_age, background=True)

    def discard(self):
        """Drop what is buffered (a background flush already under way still completes)."""
        self._buffers.clear()
        self._buffered_bytes = 0
        self._flush_at = self.budget_bytes // 2
        self._age_due = None
        try:
            self.wait()
        except Exception:
            log.warning("background flush of %r failed while its stream was discarded", self.identity, exc_info=True)

    def flush_in_background(self):
        """Start flushing everything buffered beside the caller; ``wait()`` returns once it is durable."""
        self._flush(background=True)

    @property
    def flushing(self):
        """Whether a background flush is still under way."""
        return self._background is not None and self._background.is_alive()

    def wait(self):
        """Wait for the background flush under way, if any; raise its error."""
        thread, self._background = self._background, None
        if thread is not None:
            thread.join()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    @property
    def buffered_bytes(self):
        return self._buffered_bytes

    # --- flushing ------------------------------------------------------------------------

    def _span(self, kind, key, buf):
        span = self._spans.get((kind, key))
        if span is None:
            span = (
                Chunk.objects.filter(identity=self.identity, kind=kind, channel=key)
                .values_list("span", flat=True)
                .first()
            )
            if span is None:
                extent = buf.end - buf.start
                if kind == "periodic" and extent > 0:
                    extent += max(buf.runs[0].interval, 0)  # n samples cover n intervals
                span = choose_span(buf.bytes, extent)
            self._spans[(kind, key)] = span
        return span

    def flush(self, complete_windows_only=False, older_than=None):
        """Write buffered items as chunks; returns once they are fsynced and indexed.

        With ``complete_windows_only`` (budget pressure) the newest window of each
        channel stays buffered, as more data for it is probably on its way. With
        ``older_than`` (a ``time.monotonic()`` value) only channels buffering since
        then or earlier are flushed. Returns the (first, last) time written, or None.
        """
        return self._flush(complete_windows_only, older_than)

    def _flush(self, complete_windows_only=False, older_than=None, background=False):
        if not background:
            self.wait()
        elif self._background is not None and self._background.previous is not None:
            self._background.previous.join()  # at most two background flushes at once
        windows = self._take_windows(complete_windows_only, older_than)
        if not windows:
            return None
        if not background:
            return self._store(windows)
        # Encoding, compression, fsync and indexing proceed beside the stream, which keeps
        # filling the buffer meanwhile (LZ4, file and database I/O release the GIL). A flush
        # encodes its windows while the one before it is still writing, then stores them after
        # it, in order (a later flush may merge into chunks an earlier one writes).
        previous = self._background if self._background is not None and self._background.is_alive() else None
        thread = threading.Thread(
            target=self._store_in_background,
            args=(windows, previous),
            name=f"chunk-flush {self.identity[:40]}",
            daemon=True,
        )
        thread.previous = previous
        self._background = thread
        thread.start()
        return None

    def _take_windows(self, complete_windows_only, older_than):
        """The buffered data to flush, by window, taken out of the buffers."""
        windows = []  # (kind, key, channel_ids, window_start, span, runs)
        kept = {}
        for (kind, key), buf in self._buffers.items():
            if older_than is not None and buf.since > older_than:
                kept[(kind, key)] = buf
                continue
            span = self._span(kind, key, buf)
            grouped = defaultdict(list)
            if kind in ("periodic", "timestamped"):
                for run in buf.runs:
                    for window_start, piece in it.cut(kind, run, span):
                        grouped[window_start].append(piece)
            else:
                for item in buf.runs:
                    grouped[item.timestamp // span * span].append(item)
            keep = max(grouped) if complete_windows_only and grouped else None
            for window_start, runs in grouped.items():
                if window_start != keep:
                    windows.append((kind, key, buf.channel_ids, window_start, span, runs))
            if keep is not None:
                kept[(kind, key)] = self._rebuffered(kind, buf, grouped[keep])
        self._buffers = kept
        self._buffered_bytes = sum(b.bytes for b in kept.values())
        # What stays (newest windows) must grow a little before the next try, not retry on every item.
        self._flush_at = max(self.budget_bytes // 2, self._buffered_bytes + self.budget_bytes // 8)
        since = [b.since for b in kept.values()]
        self._age_due = min(since) + self.flush_age if since and self.flush_age > 0 else None
        return windows

    def _store(self, windows, encoded=None):
        started = time.perf_counter()
        for attempt in range(3):
            try:
                time_range = self._write_windows(windows, encoded)
                break
            except IntegrityError:
                # Another writer created one of the windows first: merge with it this time.
                if attempt == 2:
                    raise
        FLUSH_SECONDS.observe(time.perf_counter() - started)
        if self.on_stored is not None and time_range[0] is not None:
            self.on_stored(*time_range)
        return time_range

    def _store_in_background(self, windows, previous):
        try:
            encoded = None
            if previous is not None:
                encoded = self._encode(windows)
                previous.join()
                threading.current_thread().previous = None  # no chain of finished flushes kept alive
            self._store(windows, encoded)
        except BaseException as exc:  # raised in the stream's thread by the next add() or flush()
            self._failure = exc
        finally:
            connection.close()  # this thread's connection (back to the pool)

    @staticmethod
    def _rebuffered(kind, buf, runs):
        """A buffer holding ``runs`` (the kept newest window of ``buf``), keeping its age."""
        out = _Buffer(buf.channel_ids)
        out.runs, out.since = runs, buf.since
        if kind in ("periodic", "timestamped"):
            out.start, out.end = min(r.start for r in runs), max(r.end for r in runs)
            out.bytes = sum(len(r.data) + _ITEM_OVERHEAD * (r.samples // it.TARGET_ITEM_SAMPLES + 1) for r in runs)
        else:
            out.start, out.end = min(r.timestamp for r in runs), max(r.timestamp for r in runs)
            out.bytes = sum(r.ByteSize() + 4 for r in runs)
        return out

    def _encode(self, windows):
        """Each window encoded as if no chunk were stored there yet (see ``_encoded``)."""
        return [self._encoded(kind, key, runs) for kind, key, _channel_ids, _window_start, _span, runs in windows]

    def _encoded(self, kind, key, runs):
        """``(payload, first, last, samples, packed)`` of one window's runs (or items)."""
        payload, first, last, samples = it.window_payload(kind, key, runs)
        return payload, first, last, samples, wire.pack(payload, self.compression, self.lz4_level)

    def _write_windows(self, windows, encoded=None):
        # Writers of the identity (and compaction) are held off until the index commits (storage.writing).
        with storage.writing(self.identity) as store:
            existing = {
                (c.kind, c.channel, c.window_start): c
                for c in Chunk.objects.select_for_update()
                .filter(identity=self.identity, window_start__in={w[3] for w in windows})
                .filter(kind__in={w[0] for w in windows}, channel__in={w[1] for w in windows})
            }
            store.prefetch(existing.values())  # the chunks merged with: fetched at once, not one by one
            blobs, new, changed, offset = [], [], [], 0
            first_time = last_time = None
            for index, (kind, key, channel_ids, window_start, span, runs) in enumerate(windows):
                row = existing.get((kind, key, window_start))
                if row is not None:  # merged with what is stored (encoded ahead without it)
                    old = it.LIST_TYPES[kind].FromString(
                        wire.unpack(
                            store.read(row.file, row.offset, row.packed_length),
                            row.unpacked_length,
                            row.compression,
                        )
                    )
                    if kind in ("periodic", "timestamped"):
                        runs = it.runs_of_list(kind, old) + runs
                    else:
                        runs = list(getattr(old, it.LIST_FIELDS[kind])) + runs
                fresh = row is None and encoded is not None
                payload, first, last, samples, packed = encoded[index] if fresh else self._encoded(kind, key, runs)
                if len(payload) > MAX_LIST_BYTES:
                    log.warning(
                        "chunk %s %s %x @%d holds %d bytes, over the 4 MiB list limit (the channel's "
                        "rate rose far above the one its %d ns span was chosen for)",
                        self.identity,
                        kind,
                        key,
                        window_start,
                        len(payload),
                        span,
                    )
                blobs.append(packed)
                # Offsets are relative to this append until it tells where it starts.
                values = (
                    self.identity,
                    kind,
                    key,
                    channel_ids,
                    window_start,
                    span,
                    first,
                    last,
                    self.segment,
                    offset,
                    len(packed),
                    len(payload),
                    samples,
                    self.compression,
                )
                if row is None:
                    new.append(values)
                else:
                    changed.append((row, values))
                offset += len(packed)
                first_time = first if first_time is None or first < first_time else first_time
                last_time = last if last_time is None or last > last_time else last_time
            name, base = store.append(blobs)
            STORED_BYTES.inc(offset)
            STORED_CHUNKS.inc(len(blobs))
            if new:
                _insert_chunks([v[:8] + (name, v[9] + base) + v[10:] for v in new])
            if changed:
                _repoint_chunks([(row.pk, v[:8] + (name, v[9] + base) + v[10:]) for row, v in changed])
        return first_time, last_time
