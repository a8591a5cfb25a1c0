"""Chunks as immutable objects: a writer's flush goes up as one new object, reads are ranged GETs.

``ObjectWriting`` is what ``data_app.store.writer`` writes through on object
storage (``storage.writing``); ``ObjectReads`` is what a ``reader.ChunkStream``
reads through: it joins the chunks it will serve that lie next to each other in
one object into one ranged GET of at most ``MAX_RANGE`` bytes, and fetches a few
ranges ahead on the shared I/O pool while the ones before are sent, so the
store's latency overlaps the client's transfer and memory stays bounded.
"""

import time
import uuid

from data_app.store import objects
from data_app.store.objects import locks

# 16 MiB: AWS's advice for ranged GETs is 8-16 MiB; fewer requests per GB (a cloud bill counts them), and
# on servers whose cost per request grows with the object (moto) 2-4x faster than 4 MiB (docs/object-storage.md).
MAX_RANGE = 16 * 1024 * 1024
MAX_GAP = 64 * 1024  # bytes of other chunks a ranged GET may read through rather than split
# Ranges fetched ahead of the one being served: enough requests in flight to hide a store's latency
# (tens of ms on a cloud), bounded in bytes so a response holds at most this much beside its block and the
# range being served (more than 8 in flight measured no faster on moto).
AHEAD_REQUESTS = 8
AHEAD_BYTES = 32 * 1024 * 1024


def identity_folder(digest_hex):
    return f"chunks/{digest_hex[:2]}/{digest_hex}/"


def new_name(identity):
    """A name never used before for an object of ``identity`` (time first: listings come out in order)."""
    return f"{identity_folder(locks.digest(identity))}{time.time_ns():016x}-{uuid.uuid4().hex[:12]}.chk"


def digest_of(name):
    """The identity digest an object name carries (``chunks/<h[:2]>/<h>/...``)."""
    return name.split("/")[2]


class ObjectWriting:
    """Inside a writer's transaction, holding the identity's advisory lock (``storage.writing``)."""

    def __init__(self, identity):
        self.identity = identity
        self.store = objects.store()
        self._fetching = {}

    def prefetch(self, rows):
        """Start fetching the stored chunks of index ``rows`` (all at once: the merge needs each)."""
        for row in rows:
            where = (row.file, row.offset, row.packed_length)
            if where not in self._fetching:
                self._fetching[where] = self.store.read_ahead(self.store.get_range, *where)

    def read(self, name, offset, length):
        future = self._fetching.pop((name, offset, length), None)
        return future.result() if future is not None else self.store.get_range(name, offset, length)

    def append(self, blobs):
        """Upload ``blobs`` back to back as one new object; returns (its name, 0: where they start)."""
        name = new_name(self.identity)
        self.store.put(name, blobs)
        return name, 0


class ObjectReads:
    """Reads the chunks of ``refs`` (``reader.ChunkRef``s, in the order they will be read); then ``close()``."""

    def __init__(self, refs=(), store=None):
        self.store = store or objects.store()
        self._ranges = []  # (name, start, end)
        self._where = {}  # (name, offset) -> index into _ranges
        for ref in refs:
            where = (ref.file, ref.offset)
            if where in self._where:
                continue
            end = ref.offset + ref.packed_length
            if self._ranges:
                name, start, last_end = self._ranges[-1]
                if name == ref.file and last_end <= ref.offset <= last_end + MAX_GAP and end - start <= MAX_RANGE:
                    self._ranges[-1] = (name, start, end)
                    self._where[where] = len(self._ranges) - 1
                    continue
            self._ranges.append((ref.file, ref.offset, end))
            self._where[where] = len(self._ranges) - 1
        self._futures = {}
        self._submitted = 0  # ranges [0, _submitted) have been asked for
        self._current = (None, None)  # (index, bytes) of the range being served

    def start(self):
        """Fetch the first range now: a store that fails does so before a response has begun (a clear 503)."""
        if self._ranges:
            self._range(0)
        return self

    @property
    def requests_planned(self):
        return len(self._ranges)

    @property
    def planned_ranges(self):
        """``[(object name, start, end)]``: the ranged GETs this read makes, in order (bench: the store's ceiling)."""
        return list(self._ranges)

    def read(self, ref):
        index = self._where.get((ref.file, ref.offset))
        if index is None:  # not planned (e.g. a merge reading around): one GET of its own
            return self.store.get_range(ref.file, ref.offset, ref.packed_length)
        data = self._range(index)
        start = self._ranges[index][1]
        if start == ref.offset and len(data) == ref.packed_length:
            return data
        # A view, not a copy: the caller joins it into its block (or decompresses it) and lets go.
        return memoryview(data)[ref.offset - start : ref.offset - start + ref.packed_length]

    def _range(self, index):
        if self._current[0] == index:
            return self._current[1]
        self._submitted = max(self._submitted, index)  # ranges skipped over are never fetched
        ahead = sum(end - start for _, start, end in self._ranges[index + 1 : self._submitted])
        while self._submitted < len(self._ranges) and self._submitted <= index + AHEAD_REQUESTS:
            name, start, end = self._ranges[self._submitted]
            if self._submitted > index:
                if ahead and ahead + end - start > AHEAD_BYTES:  # one range ahead at least, whatever its size
                    break
                ahead += end - start
            self._futures[self._submitted] = self.store.read_ahead(self.store.get_range, name, start, end - start)
            self._submitted += 1
        future = self._futures.pop(index, None)
        if future is None:  # read again after we moved on
            name, start, end = self._ranges[index]
            data = self.store.get_range(name, start, end - start)
        else:
            data = future.result()
        for skipped in [i for i in self._futures if i < index]:  # never to be read (a transform dropped them)
            self._futures.pop(skipped).cancel()
        self._current = (index, data)
        return data

    def close(self):
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        self._current = (None, None)
