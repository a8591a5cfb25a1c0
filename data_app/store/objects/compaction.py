"""Compaction on object storage: rewrite objects holding garbage, delete objects no index row names.

Objects are immutable, so a row naming (object, offset, length) always means
the same bytes; garbage is what merged (late or back-filled) chunks left behind
and what failed flushes uploaded without committing rows. For each object of
the identities examined (one listing of ``chunks/``):

1. **Rewrite** (garbage >= the ratio): copy its live chunks into a new object
   (ranged GETs, one PUT), then, in one transaction holding the identity's
   advisory lock (``locks``: writers hold it from upload to commit), point the
   rows still naming the old object at the copy. The old object is now named
   by no row.
2. **Retire** an object no row names: checked under the identity's lock (so
   no writer is about to name it), an empty marker ``retired/<name>`` is
   written; its time starts the grace period.
3. **Delete** an object whose marker is older than the grace period (and that
   still no row names, checked under the lock), then its marker.

Before these, an identity with at least ``MIN_SMALL_OBJECTS`` objects under
``SMALL_OBJECT_BYTES`` (one per flush: many small flushes make many small
objects) is **consolidated**: its chunks in those objects are copied, in the
order reads serve them (kind, channel, time), into objects of about
``TARGET_OBJECT_BYTES``, and their rows repointed as in a rewrite (rows a writer
changed meanwhile are left as they are). A read of one channel then takes one
ranged GET per 4 MiB instead of one per flush, and the small objects, named by
no row any more, are retired.

A reader that queried the index before a rewrite or a merge still reads the
old object: it stays for the grace period (``DEFAULT_GRACE_SECONDS``; a
response must finish within it). ``grace_seconds=0`` deletes at once (no reader
may be running). A crash leaves at worst an unnamed object (retired and deleted
by a later run) or a marker without an object (dropped). One compaction runs at
a time (a PostgreSQL advisory lock).
"""

import time
import uuid

from django.db import transaction

from data_app.models import Chunk
from data_app.store import objects
from data_app.store.compaction import CompactionBusy, SegmentStats, Summary, with_live_bytes
from data_app.store.objects import chunks, locks

DEFAULT_GRACE_SECONDS = 15 * 60
RETIRED = "retired/"
SMALL_OBJECT_BYTES = 16 * 1024 * 1024
MIN_SMALL_OBJECTS = 4
# Two of the reads' 16 MiB ranges (chunks.MAX_RANGE): larger objects save no requests.
TARGET_OBJECT_BYTES = 32 * 1024 * 1024


def object_stats(identity=None):
    """``SegmentStats`` of every chunk object (of ``identity`` only, if given), and ``{name: marker time}``."""
    store = objects.store()
    under = "chunks/" if identity is None else chunks.identity_folder(locks.digest(identity))
    stats = {name: SegmentStats(name, size) for name, size, _ in store.list(under)}
    retired = {name[len(RETIRED) :]: modified for name, _, modified in store.list(RETIRED + under)}
    return with_live_bytes(stats, identity), retired


def compact(
    identity=None,
    min_garbage_ratio=0.2,
    dry_run=False,
    on_start=None,
    on_progress=None,
    grace_seconds=DEFAULT_GRACE_SECONDS,
    consolidate=True,
):
    """Consolidate, rewrite, retire and delete objects (module docstring); returns a ``compaction.Summary``."""
    with locks.compaction_lock(lambda: CompactionBusy("another compaction is running")):
        consolidated = 0 if dry_run or not consolidate else _consolidate_small_objects(identity, on_progress)
        all_stats, retired = object_stats(identity)
        selected = [s for s in all_stats if s.chunks == 0 or s.garbage > 0 and s.garbage_ratio >= min_garbage_ratio]
        summary = Summary(examined=len(all_stats), compacted=consolidated)
        if on_start is not None:
            on_start(selected)
        if dry_run:
            return summary
        store = objects.store()
        now = time.time()
        for stats in selected:
            summary.bytes_before += stats.size
            if stats.chunks:
                summary.bytes_after += _rewrite(store, stats, on_progress)
                summary.compacted += 1
                retired.pop(stats.name, None)
                _retire_or_delete(store, stats.name, None, grace_seconds, now, summary)
            elif not _retire_or_delete(store, stats.name, retired.pop(stats.name, None), grace_seconds, now, summary):
                summary.bytes_after += stats.size  # waits out its grace period
        existing = {s.name for s in all_stats}
        orphaned_markers = [RETIRED + name for name in retired if name not in existing]
        if orphaned_markers:  # the object went already (a crash between the two deletes)
            store.delete(orphaned_markers)
        return summary


def _consolidate_small_objects(identity, on_progress):
    """Consolidate every identity (or ``identity``) with enough small objects; the objects written."""
    store = objects.store()
    under = "chunks/" if identity is None else chunks.identity_folder(locks.digest(identity))
    small = {}
    for name, size, _ in store.list(under):
        if size < SMALL_OBJECT_BYTES:
            small.setdefault(chunks.digest_of(name), []).append(name)
    return sum(
        _consolidate(store, d, names, on_progress) for d, names in small.items() if len(names) >= MIN_SMALL_OBJECTS
    )


def _consolidate(store, digest, names, on_progress):
    rows = list(
        Chunk.objects.filter(file__in=names)
        .order_by("kind", "channel", "start_time")
        .values_list("id", "file", "offset", "packed_length")
    )
    if len({file for _, file, _, _ in rows}) < 2:
        return 0
    stats = SegmentStats(f"{chunks.identity_folder(digest)}*", 0)  # for progress reports
    reads = chunks.ObjectReads([_Ref(file, offset, length) for _, file, offset, length in rows], store)
    written, batch, size = 0, [], 0
    try:
        for pk, file, offset, length in rows:
            batch.append((pk, file, offset, length, reads.read(_Ref(file, offset, length))))
            size += length
            if on_progress is not None:
                on_progress(stats, length)
            if size >= TARGET_OBJECT_BYTES:
                _write_consolidated(store, digest, batch)
                written, batch, size = written + 1, [], 0
        if batch:
            _write_consolidated(store, digest, batch)
            written += 1
    finally:
        reads.close()
    return written


def _write_consolidated(store, digest, batch):
    """One new object holding ``batch`` ([(pk, file, offset, length, bytes)]); rows still naming the old bytes move."""
    name = f"{chunks.identity_folder(digest)}{time.time_ns():016x}-{uuid.uuid4().hex[:12]}.chk"
    store.put(name, [data for *_, data in batch])
    moved, position = {}, 0
    for pk, file, offset, length, _ in batch:
        moved[pk] = (file, offset, length, position)
        position += length
    with transaction.atomic():
        locks.lock_digest(digest)
        current = (
            Chunk.objects.select_for_update().filter(id__in=moved).values_list("id", "file", "offset", "packed_length")
        )
        updates = [
            Chunk(id=pk, file=name, offset=moved[pk][3]) for pk, *where in current if tuple(where) == moved[pk][:3]
        ]
        Chunk.objects.bulk_update(updates, ["file", "offset"], batch_size=1000)


def _rewrite(store, stats, on_progress):
    """Copy the live chunks of ``stats.name`` into a new object and repoint their rows; the new size."""
    planned = list(
        Chunk.objects.filter(file=stats.name).order_by("offset").values_list("id", "offset", "packed_length")
    )
    reads = chunks.ObjectReads([_Ref(stats.name, offset, length) for _, offset, length in planned], store)
    blobs, moved, position = [], {}, 0
    try:
        for pk, offset, length in planned:
            blobs.append(reads.read(_Ref(stats.name, offset, length)))
            moved[pk] = (offset, length, position)
            position += length
            if on_progress is not None:
                on_progress(stats, length)
    finally:
        reads.close()
    digest = chunks.digest_of(stats.name)
    name = f"{chunks.identity_folder(digest)}{time.time_ns():016x}-{uuid.uuid4().hex[:12]}.chk"
    store.put(name, blobs)
    with transaction.atomic():
        locks.lock_digest(digest)
        current = Chunk.objects.select_for_update().filter(file=stats.name).values_list("id", "offset", "packed_length")
        updates = [
            Chunk(id=pk, file=name, offset=moved[pk][2])
            for pk, offset, length in current
            if pk in moved and moved[pk][:2] == (offset, length)
        ]
        Chunk.objects.bulk_update(updates, ["file", "offset"], batch_size=1000)
    # Immutable objects: a row naming the old object now was repointed (writers never name an old object).
    return position


def _retire_or_delete(store, name, marked_at, grace_seconds, now, summary):
    """Retire (mark) or delete an object no row names; True if it was deleted."""
    due = grace_seconds == 0 or (marked_at is not None and now - marked_at >= grace_seconds)
    with transaction.atomic():
        locks.lock_digest(chunks.digest_of(name))  # no writer between its upload and its commit
        if Chunk.objects.filter(file=name).exists():
            if marked_at is not None:
                store.delete([RETIRED + name])  # named again (cannot happen; be safe)
            return False
        if due:
            store.delete([name, RETIRED + name])
            summary.removed += 1
            return True
        if marked_at is None:
            store.put(RETIRED + name, b"")
    return False


class _Ref:
    """What ``ObjectReads`` needs of a chunk."""

    __slots__ = ("file", "offset", "packed_length")

    def __init__(self, file, offset, packed_length):
        self.file, self.offset, self.packed_length = file, offset, packed_length
