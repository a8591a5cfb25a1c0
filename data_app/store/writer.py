"""Buffers written items and flushes them into stable, time-aligned chunks.

Chunk span rule: each (identity, kind, channel) gets one span from
``SPANS`` (1, 2, 5, 10, 20, 50, 100 s) the first time it is flushed, the
largest whose expected list size at the observed rate (buffered serialized
bytes / buffered time extent) stays within ``TARGET_LIST_BYTES`` (64 KiB;
1 s when even that is exceeded, 10 s when the buffer has no time extent to
measure). The span is recorded on every index row and reused for all later
writes of the channel, so chunk windows ``[k*span, (k+1)*span)`` are stable
whatever the request or write pattern. Data landing in a window that already
has a chunk (late or back-filled data, or a flush mid-window) is merged: the
chunk is re-read, merged in time order, appended again and its index row
updated in the same transaction (the old bytes become segment garbage).
"""
import logging
from collections import defaultdict

from django.db import IntegrityError, transaction

from data_app import wire
from data_app.models import Chunk
from data_app.store import items as it
from data_app.store import segments

log = logging.getLogger(__name__)

SECOND = 1_000_000_000
SPANS = [s * SECOND for s in (1, 2, 5, 10, 20, 50, 100)]
DEFAULT_SPAN = 10 * SECOND
TARGET_LIST_BYTES = 64 * 1024
DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024


def choose_span(total_bytes, extent_ns):
    if extent_ns <= 0:
        return DEFAULT_SPAN
    rate = total_bytes * SECOND / extent_ns
    best = SPANS[0]
    for span in SPANS:
        if rate * span / SECOND <= TARGET_LIST_BYTES:
            best = span
    return best


class _Buffer:
    __slots__ = ("items", "bytes", "channel_ids", "start", "end")

    def __init__(self, channel_ids):
        self.items, self.bytes, self.channel_ids = [], 0, channel_ids
        self.start = self.end = None


class ChunkWriter:
    """Collects the items of one data identity; ``flush()`` makes them durable and readable."""

    def __init__(self, identity, budget_bytes=DEFAULT_BUDGET_BYTES, compression=wire.COMPRESSION_LZ4):
        self.identity = identity
        self.budget_bytes = budget_bytes
        self.compression = compression
        self.segment = segments.segment_name(identity)
        self._buffers = {}
        self._buffered_bytes = 0
        self._spans = {}

    # --- buffering -----------------------------------------------------------------------

    def add(self, kind, item):
        """Validate and buffer one item (raises InvalidArgument; nothing is buffered then)."""
        it.validate(kind, item)
        if kind in ("timestamped", "periodic") and it.sample_count(kind, item) == 0:
            return
        key, channel_ids = it.channel_key(kind, item)
        buf = self._buffers.get((kind, key))
        if buf is None:
            buf = self._buffers[(kind, key)] = _Buffer(channel_ids)
        for piece in it.split(kind, item):
            size = piece.ByteSize() + 4
            buf.items.append(piece)
            buf.bytes += size
            self._buffered_bytes += size
            start, end = it.start_time(kind, piece), it.end_time(kind, piece)
            buf.start = start if buf.start is None else min(buf.start, start)
            buf.end = end if buf.end is None else max(buf.end, end)
        if self._buffered_bytes > self.budget_bytes:
            self.flush(complete_windows_only=True)
            if self._buffered_bytes > self.budget_bytes:
                self.flush()

    def discard(self):
        self._buffers.clear()
        self._buffered_bytes = 0

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
                if kind == "periodic" and buf.items:
                    extent += buf.items[0].interval
                span = choose_span(buf.bytes, extent)
            self._spans[(kind, key)] = span
        return span

    def flush(self, complete_windows_only=False):
        """Write buffered items as chunks; returns once they are fsynced and indexed.

        With ``complete_windows_only`` (budget pressure) the newest window of each
        channel stays buffered, as more data for it is probably on its way.
        """
        windows = []  # (kind, key, channel_ids, window_start, span, items)
        for (kind, key), buf in list(self._buffers.items()):
            span = self._span(kind, key, buf)
            grouped = defaultdict(list)
            for item in buf.items:
                for piece in it.split(kind, item, span):
                    grouped[it.start_time(kind, piece) // span * span].append(piece)
            keep = max(grouped) if complete_windows_only and grouped else None
            for window_start, pieces in grouped.items():
                if window_start != keep:
                    windows.append((kind, key, buf.channel_ids, window_start, span, pieces))
            self._buffered_bytes -= buf.bytes
            if keep is None:
                del self._buffers[(kind, key)]
            else:
                buf.items = grouped[keep]
                buf.bytes = sum(p.ByteSize() + 4 for p in buf.items)
                buf.start = min(it.start_time(kind, p) for p in buf.items)
                buf.end = max(it.end_time(kind, p) for p in buf.items)
                self._buffered_bytes += buf.bytes
        if not windows:
            return None
        for attempt in range(3):
            try:
                time_range = self._write_windows(windows)
                break
            except IntegrityError:
                # Another writer created one of the windows first: merge with it this time.
                if attempt == 2:
                    raise
        self._extend_session(*time_range)
        return time_range

    def _write_windows(self, windows):
        with transaction.atomic():
            existing = {
                (c.kind, c.channel, c.window_start): c
                for c in Chunk.objects.select_for_update()
                .filter(identity=self.identity, window_start__in={w[3] for w in windows})
                .filter(kind__in={w[0] for w in windows}, channel__in={w[1] for w in windows})
            }
            blobs, rows, offset = [], [], 0
            reader = segments.SegmentReader()
            try:
                for kind, key, channel_ids, window_start, span, pieces in windows:
                    row = existing.get((kind, key, window_start))
                    if row is not None:
                        old = wire.LIST_TYPES[kind]()
                        old.ParseFromString(
                            wire.unpack(reader.read(row.file, row.offset, row.packed_length), row.unpacked_length,
                                        row.compression)
                        )
                        pieces = list(getattr(old, it.LIST_FIELDS[kind])) + pieces
                    pieces.sort(key=lambda p: it.start_time(kind, p))
                    message = wire.LIST_TYPES[kind]()
                    getattr(message, it.LIST_FIELDS[kind]).extend(pieces)
                    payload = message.SerializeToString()
                    packed = wire.pack(payload, self.compression)
                    blobs.append(packed)
                    if row is None:
                        row = Chunk(identity=self.identity, kind=kind, channel=key, window_start=window_start)
                    row.channel_ids = channel_ids
                    row.span = span
                    row.start_time = min(it.start_time(kind, p) for p in pieces)
                    row.end_time = max(it.end_time(kind, p) for p in pieces)
                    row.file = self.segment
                    row.offset = offset  # relative for now
                    row.packed_length = len(packed)
                    row.unpacked_length = len(payload)
                    row.sample_count = sum(it.sample_count(kind, p) for p in pieces)
                    row.compression = self.compression
                    rows.append(row)
                    offset += len(packed)
            finally:
                reader.close()
            base = segments.append(self.segment, b"".join(blobs))
            new, changed = [], []
            for row in rows:
                row.offset += base
                (changed if row.pk else new).append(row)
            if new:
                Chunk.objects.bulk_create(new)
            if changed:
                Chunk.objects.bulk_update(
                    changed,
                    ["channel_ids", "span", "start_time", "end_time", "file", "offset", "packed_length",
                     "unpacked_length", "sample_count", "compression"],
                )
        return min(r.start_time for r in rows), max(r.end_time for r in rows)

    def _extend_session(self, start, end):
        from sessions_app.models import Session
        from sessions_app.services.updates import create_or_update_session

        if Session.objects.filter(identity=self.identity).exists():
            create_or_update_session(self.identity, [("extend_time_range", (start, end))])
