"""Compaction: rewrite segment files keeping only the chunks the index points at.

Segment files collect garbage: a merged chunk (late or back-filled data) is
appended again and its old bytes stay behind, and a flush that failed after
its append leaves bytes no index row names. A segment's *garbage* is its size
minus the bytes of the chunks indexed in it.

Compacting segment ``F`` of identity ``I``:

1. **Copy**, without locks: the live chunks of ``F``, in file order, into a
   new segment ``<h>.<token>.seg`` beside it (a name never used before and
   never appended to by writers), fsynced.
2. **Swap**, holding ``I``'s append lock (``segments.Appender`` on
   ``segment_name(I)``, which every writer of ``I`` holds from its append
   until its index rows commit, so no write of ``I`` is in flight): in one
   transaction, lock ``F``'s index rows; chunks unchanged since the copy now
   point at their copy, chunks written or merged meanwhile are copied now.
3. **Remove** ``F``, still holding the lock, once the swap has committed: no
   row points at it and no writer can add one before the lock is released
   (writers that opened ``F`` meanwhile see it is gone and create a fresh
   append segment). Readers that already opened ``F`` keep reading it; readers
   holding older index rows retry (see ``data_app.store.reader``).

A crash leaves at worst a segment no row points at (a copy not yet swapped
in, or a swapped-out file not yet removed); compaction removes such orphans
(an append segment under its lock, once no row points at it). One compaction
runs at a time (a lock file in the chunks directory).
"""

import fcntl
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import Count, Min, Sum

from data_app.models import Chunk
from data_app.store import objects, segments
from rta_core.errors import ServiceError

LOCK_NAME = ".compaction.lock"
DEFAULT_MIN_GARBAGE_RATIO = 0.2
_COPY_BLOCK = 4 * 1024 * 1024


class CompactionBusy(ServiceError):
    http_status = 409


@dataclass
class SegmentStats:
    name: str  # relative to the chunks root
    size: int  # bytes on disk
    live: int = 0  # bytes of indexed chunks
    chunks: int = 0
    identity: str | None = None

    @property
    def garbage(self):
        return max(self.size - self.live, 0)

    @property
    def garbage_ratio(self):
        return self.garbage / self.size if self.size else 1.0


@dataclass
class Summary:
    examined: int = 0
    compacted: int = 0
    removed: int = 0  # segments removed without a copy (nothing live in them)
    bytes_before: int = 0  # of the segments compacted or removed
    bytes_after: int = 0
    skipped: list = field(default_factory=list)  # (segment, reason)

    @property
    def reclaimed(self):
        return self.bytes_before - self.bytes_after


def _is_append_segment(name):
    """``<h>.seg`` (an identity's append segment) rather than a compacted ``<h>.<token>.seg``."""
    return Path(name).name.count(".") == 1


def _digest(identity):
    return Path(segments.segment_name(identity)).name.split(".")[0]


def segment_stats(identity=None):
    """Every segment file on disk (of ``identity`` only, if given) with its live bytes."""
    root = segments.chunks_root()
    if identity is None:
        paths = root.glob("*/*.seg")
    else:
        digest = _digest(identity)
        paths = [*root.glob(f"{digest[:2]}/{digest}.seg"), *root.glob(f"{digest[:2]}/{digest}.*.seg")]
    stats = {}
    for path in paths:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        name = f"{path.parent.name}/{path.name}"
        stats[name] = SegmentStats(name, size)
    return with_live_bytes(stats, identity)


def with_live_bytes(stats, identity=None):
    """``stats`` (``{file name: SegmentStats}``) filled in from the index, sorted by name: live bytes, chunk
    count and owner of each file (segment or object) the index rows name."""
    rows = Chunk.objects.all() if identity is None else Chunk.objects.filter(identity=identity)
    for name, live, count, owner in (
        rows.values("file")
        .annotate(live=Sum("packed_length"), n=Count("id"), owner=Min("identity"))
        .values_list("file", "live", "n", "owner")
    ):
        if name in stats:
            s = stats[name]
            s.live, s.chunks, s.identity = live or 0, count, owner
    return sorted(stats.values(), key=lambda s: s.name)


class _CompactionLock:
    def __enter__(self):
        root = segments.chunks_root()
        root.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise CompactionBusy("another compaction is running") from None
        return self

    def __exit__(self, *exc):
        os.close(self._fd)


def compact(
    identity=None,
    min_garbage_ratio=DEFAULT_MIN_GARBAGE_RATIO,
    dry_run=False,
    on_start=None,
    on_progress=None,
    grace_seconds=None,
):
    """Compact every segment whose garbage ratio is at least ``min_garbage_ratio``; returns a ``Summary``.

    ``on_start(selected)`` is called with the ``SegmentStats`` chosen (before any
    work), ``on_progress(stats, nbytes)`` as live bytes are copied. On object storage
    (``RTA_STORE=s3``) objects are consolidated and rewritten instead, and unnamed ones deleted
    ``grace_seconds`` after compaction first finds them unnamed (``objects.compaction``).
    """
    if objects.enabled():
        from data_app.store.objects import compaction as object_compaction

        grace = object_compaction.DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
        return object_compaction.compact(identity, min_garbage_ratio, dry_run, on_start, on_progress, grace)
    with _CompactionLock():
        all_stats = segment_stats(identity)
        selected = [s for s in all_stats if s.garbage > 0 and s.garbage_ratio >= min_garbage_ratio or s.chunks == 0]
        summary = Summary(examined=len(all_stats))
        if on_start is not None:
            on_start(selected)
        if dry_run:
            return summary
        for stats in selected:
            try:
                outcome = compact_segment(stats, on_progress)
            except FileNotFoundError as exc:
                summary.skipped.append((stats.name, f"missing: {exc.filename}"))
                continue
            if outcome is None:
                summary.skipped.append((stats.name, "in use"))
                continue
            after, copied = outcome
            summary.bytes_before += stats.size
            summary.bytes_after += after
            if copied:
                summary.compacted += 1
            else:
                summary.removed += 1
        return summary


def _new_name(name):
    folder, base = name.split("/")
    return f"{folder}/{base.split('.')[0]}.{uuid.uuid4().hex[:16]}.seg"


def _copy(src_fd, dst, chunks, position, on_progress, stats):
    """Append ``chunks`` (id, offset, length) from ``src_fd`` to ``dst``; returns {id: new offset}, end."""
    moved = {}
    for pk, offset, length in chunks:
        data = os.pread(src_fd, length, offset)
        if len(data) != length:
            raise OSError(f"segment {stats.name} is truncated at {offset}+{length}")
        dst.write(data)
        moved[pk] = position
        position += length
        if on_progress is not None:
            on_progress(stats, length)
    return moved, position


def compact_segment(stats, on_progress=None):
    """Compact (or remove, when nothing in it is live) one segment; returns (bytes after, copied?) or None."""
    root = segments.chunks_root()
    source = root / stats.name
    if stats.chunks == 0 and stats.identity is None:
        return _remove_orphan(stats)
    new_name = _new_name(stats.name)
    target = root / new_name
    with open(source, "rb") as src:
        planned = list(
            Chunk.objects.filter(file=stats.name).order_by("offset").values_list("id", "offset", "packed_length")
        )
        with open(target, "xb") as dst:
            moved, end = _copy(src.fileno(), dst, planned, 0, on_progress, stats)
            dst.flush()
            os.fsync(dst.fileno())
        segments.fsync_dir(target.parent)
        copied_from = {pk: (offset, length) for pk, offset, length in planned}
        append_name = segments.segment_name(stats.identity)
        try:
            with segments.Appender(append_name) as appender:
                with transaction.atomic():
                    current = list(
                        Chunk.objects.select_for_update()
                        .filter(file=stats.name)
                        .order_by("offset")
                        .values_list("id", "offset", "packed_length")
                    )
                    late = [c for c in current if copied_from.get(c[0]) != (c[1], c[2])]
                    if late:  # written or merged since the copy
                        with open(target, "ab") as dst:
                            extra, end = _copy(src.fileno(), dst, late, end, on_progress, stats)
                            dst.flush()
                            os.fsync(dst.fileno())
                        moved.update(extra)
                    live = [pk for pk, _, _ in current]
                    Chunk.objects.bulk_update(
                        [Chunk(id=pk, file=new_name, offset=moved[pk]) for pk in live],
                        ["file", "offset"],
                        batch_size=1000,
                    )
                # Committed: no row points at the old segment, and no writer of the identity can
                # add one while we hold its append lock.
                source.unlink()
                if not live:
                    target.unlink()
                if append_name != stats.name:
                    _drop_if_unused(appender.path, append_name)
                segments.fsync_dir(source.parent)
        except BaseException:
            if target.exists() and not Chunk.objects.filter(file=new_name).exists():
                target.unlink()
            raise
    return (end if live else 0), bool(live)


def _drop_if_unused(path, name):
    """Taking an identity's append lock creates its segment: leave none behind empty (lock held)."""
    if path.stat().st_size == 0 and not Chunk.objects.filter(file=name).exists():
        path.unlink()


def _remove_orphan(stats):
    """A segment no index row points at: removed (an append segment under its own lock)."""
    source = segments.chunks_root() / stats.name
    if not _is_append_segment(stats.name):
        # Only compaction writes these, and only one compaction runs.
        if Chunk.objects.filter(file=stats.name).exists():
            return None
        source.unlink()
        return 0, False
    with segments.Appender(stats.name):
        # Writers hold this lock from append to commit: if no row points here now, none will.
        if Chunk.objects.filter(file=stats.name).exists():
            return None
        source.unlink()
        segments.fsync_dir(source.parent)
    return 0, False
