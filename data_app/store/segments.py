"""Append-only segment files holding chunk bytes.

Each data identity appends to ``RTA_DATA_PATH/chunks/<h[:2]>/<h>.seg`` where
``h`` is a SHA-256 of the identity (never its text, which may hold any
characters). Appends take an exclusive ``flock`` so several writers (threads
or processes) can share a segment, and are fsynced before the index row that
points at them is committed. Rewritten (merged) chunks are appended again;
the old bytes stay behind as garbage until a future compaction.
"""
import fcntl
import hashlib
import os
from pathlib import Path

from django.conf import settings


def chunks_root():
    return Path(settings.RTA_DATA_PATH) / "chunks"


def segment_name(identity):
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40]
    return f"{digest[:2]}/{digest}.seg"


def append(name, data):
    """Append ``data`` to segment ``name``, fsync it, and return the offset it starts at."""
    path = chunks_root() / name
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        offset = os.fstat(fd).st_size
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)
    return offset


def _fsync_dir(path):
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
