"""Append-only segment files holding chunk bytes.

Each data identity appends to ``RTA_DATA_PATH/chunks/<h[:2]>/<h>.seg`` where
``h`` is a SHA-256 of the identity (never its text, which may hold any
characters). Appends take an exclusive ``flock`` (``Appender``) so several
writers (threads or processes) can share a segment; they are fsynced, and the
lock is held, until the index rows that point at them are committed.
Rewritten (merged) chunks are appended again; the old bytes stay behind as
garbage until compaction.
"""

import fcntl
import hashlib
import os
from pathlib import Path

from django.conf import settings

from data_app.store import objects

_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)  # buffers one writev takes


def chunks_root():
    return Path(settings.RTA_DATA_PATH) / "chunks"


def segment_name(identity):
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40]
    return f"{digest[:2]}/{digest}.seg"


def append(name, data):
    """Append ``data`` to segment ``name``, fsync it, and return the offset it starts at."""
    with Appender(name) as appender:
        return appender.append(data)


class Appender:
    """Exclusive append access to one segment: ``with Appender(name) as a: offset = a.append(data)``.

    The ``flock`` is taken on entry and held until exit, so a writer can keep
    it until the index rows pointing at its bytes are committed. Whoever
    removes a segment must take the same lock first; a writer that opened the
    file just before it was removed notices (the name no longer leads to its
    inode) and opens the new file.
    """

    def __init__(self, name):
        self.path = chunks_root() / name
        self._fd = None
        self._created = False

    def __enter__(self):
        while True:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._created = True
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                try:
                    named = os.stat(self.path)
                except FileNotFoundError:
                    named = None
            except BaseException:
                os.close(fd)
                raise
            if named is not None and (named.st_ino, named.st_dev) == (held.st_ino, held.st_dev):
                self._fd = fd
                return self
            os.close(fd)  # removed (or replaced) while we waited for the lock: open it again

    def append(self, data):
        """Write ``data`` (bytes-like, or a list of them) at the end, fsync, and return the offset it starts at.

        A list is written as it is (``writev``), not joined first: no copy of a
        flush's chunks, and no long hold of the interpreter lock making one.
        """
        offset = os.fstat(self._fd).st_size
        views = [memoryview(part).cast("B") for part in (data if isinstance(data, list) else [data])]
        views = [view for view in views if view.nbytes]
        first = 0  # views[first:] are still to write
        while first < len(views):
            written = os.writev(self._fd, views[first : first + _IOV_MAX])
            while first < len(views) and written >= views[first].nbytes:
                written -= views[first].nbytes
                first += 1
            if written:  # a partial write: the rest of that view next time
                views[first] = views[first][written:]
        os.fsync(self._fd)
        if self._created:
            fsync_dir(self.path.parent)
            self._created = False
        return offset

    def __exit__(self, *exc):
        os.close(self._fd)  # releases the lock
        self._fd = None


def fsync_dir(path):
    """Make a file's creation, rename or removal in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentReader:
    """Reads chunk bytes, keeping segment files open for the life of one request."""

    def __init__(self):
        self._files = {}

    def read(self, name, offset, length):
        if objects.enabled():  # chunks are objects (RTA_STORE=s3): one ranged GET
            return objects.store().get_range(name, offset, length)
        handle = self._files.get(name)
        if handle is None:
            handle = self._files[name] = open(chunks_root() / name, "rb")
        data = os.pread(handle.fileno(), length, offset)
        if len(data) != length:
            raise OSError(f"segment {name} is truncated at {offset}+{length}")
        return data

    def close(self):
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
