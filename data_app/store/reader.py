"""Index look-ups and reads of stored chunks.

``find_chunks`` returns the index rows a request needs, whole chunks
overlapping ``[start, end]`` (a request is rounded outwards to chunk
boundaries), in time order per channel. ``open_stream`` turns index rows into
a ``ChunkStream`` whose segment files are already open: iterated, it is the
chunked wire format; ``lists()`` gives one decoded list message per chunk.
Chunks without a transform are the fast path: the stored bytes go out behind
a freshly written ``ChunkTransferHeader`` without being decoded. Chunks with
one (a data binding's offset, clipping or re-mapping, ``rta_kit.transforms``)
are decompressed, patched in their wire bytes where they can be (protobuf
otherwise) and go out as LZ4 or uncompressed (``RTA_DATA_TRANSFORMED_COMPRESSION``).

Reading against compaction (``data_app.store.compaction``): compaction moves
live chunks into a new, never reused, segment file, commits the index, and
only then unlinks the old file; an identity's own append segment
(``segments.segment_name``) is unlinked only while no index row points at it,
and writers then create it afresh under the same name. A read therefore opens
every file it needs right after its index query, holding the files open for
the rest of the request (an unlinked file stays readable), and checks:

- a compacted file that is gone (``ENOENT``) means the rows were stale:
  query again;
- an append segment is opened *before* the query and must still be the same
  file (inode) after it; rows naming it can then only mean that inode, since
  the name is never unlinked while rows name it. Otherwise: query again.

On object storage (``RTA_STORE=s3``, ``data_app.store.objects``) chunks are
immutable objects read with ranged GETs (``objects.chunks.ObjectReads``: chunks
next to each other in one object in one request, a few requests ahead of the
client); compaction removes an object only a grace period after no index row
names it, so one index query suffices.
"""

import errno
import os
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

from data_app.models import Chunk
from data_app.store import objects, roles, segments
from rta_core.errors import InvalidArgument, Unavailable, excerpt
from rta_kit import transforms, wire

KINDS = ("timestamped", "periodic", "row", "events")
TRANSFORMED_COMPRESSION = {"lz4": wire.COMPRESSION_LZ4, "none": wire.COMPRESSION_NONE}
ATTEMPTS = 5
BLOCK_SIZE = 4 * 1024 * 1024


class StoreBusy(Unavailable):
    """The chunks moved under every attempt to open them (compaction); try again."""


@dataclass(frozen=True)
class ChunkRef:
    channel_ids: list
    start_time: int
    end_time: int
    file: str
    offset: int
    packed_length: int
    unpacked_length: int
    compression: int
    channel: int = 0


_FIELDS = (
    "channel_ids",
    "start_time",
    "end_time",
    "file",
    "offset",
    "packed_length",
    "unpacked_length",
    "compression",
    "channel",
)


def check_request(kind, start=None, end=None):
    if kind not in KINDS:
        raise InvalidArgument(f"unknown data kind {excerpt(kind)}")
    if start is not None and end is not None and start > end:
        raise InvalidArgument(f"start {start} is after end {end}")


def find_chunks(identity, kind, channels=None, start=None, end=None):
    """Index rows (as ``ChunkRef``s) for ``identity``/``kind``; evaluated now, not lazily."""
    check_request(kind, start, end)
    rows = Chunk.objects.filter(identity=identity, kind=kind)
    if channels is not None and kind in ("timestamped", "periodic"):
        rows = rows.filter(channels.q("channel"))
    if start is not None:
        rows = rows.filter(end_time__gte=start)
    if end is not None:
        rows = rows.filter(start_time__lte=end)
    refs = [ChunkRef(*values) for values in rows.order_by("channel", "start_time").values_list(*_FIELDS)]
    if channels is not None and kind == "row":
        refs = [r for r in refs if channels.matches_any(r.channel_ids)]
    return refs


class SegmentFiles:
    """The segment files one read holds open (by name, relative to the chunks root)."""

    def __init__(self):
        self._files = {}

    def open(self, name):
        """Open ``name`` (kept for the life of the read); False when it does not exist."""
        if name in self._files:
            return True
        try:
            self._files[name] = open(segments.chunks_root() / name, "rb", buffering=0)
        except FileNotFoundError:
            return False
        return True

    def same_as_named(self, name):
        """Whether the open ``name`` is still the file the name points at."""
        handle = self._files.get(name)
        if handle is None:
            return False
        try:
            now = os.stat(segments.chunks_root() / name)
        except FileNotFoundError:
            return False
        held = os.fstat(handle.fileno())
        return (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev)

    def read(self, ref):
        handle = self._files.get(ref.file)
        if handle is None:
            if not self.open(ref.file):
                raise OSError(errno.ENOENT, f"segment {ref.file} is missing")
            handle = self._files[ref.file]
        data = os.pread(handle.fileno(), ref.packed_length, ref.offset)
        if len(data) != ref.packed_length:
            raise OSError(f"segment {ref.file} is truncated at {ref.offset}+{ref.packed_length}")
        return data

    def close(self):
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def open_stream(kind, identities, plan):
    """A ``ChunkStream`` of ``plan()``'s items with every file they need open (see the module docstring).

    ``plan()`` runs the index queries and returns, in serving order, pairs of
    ``(ChunkRef, None)`` (served as stored), ``(ChunkRef, ChunkTransform)`` or
    ``(transforms.Window, transforms.MERGE)`` (several chunks merged); ``identities`` are
    the data identities it reads.
    """
    roles.check_reader()
    if objects.enabled():
        # Objects are immutable and removed only a grace period after no row names them
        # (``objects.compaction``): the rows just read stay readable for the whole response.
        items = plan()
        reads = _object_reads(item for item, _ in items)
        try:
            reads.start()  # a failing store fails here, before a response has begun
        except BaseException:
            reads.close()
            raise
        return ChunkStream(kind, items, reads)
    for _ in range(ATTEMPTS):
        files = SegmentFiles()
        appendable = {segments.segment_name(identity) for identity in identities}
        for name in appendable:
            files.open(name)
        try:
            items = plan()
            settled = all(
                files.same_as_named(name) if name in appendable else files.open(name)
                for name in {ref.file for item, _ in items for ref in _refs(item)}
            )
        except BaseException:
            files.close()
            raise
        if settled:
            return ChunkStream(kind, items, files)
        files.close()
    raise StoreBusy("the segment files of the requested chunks keep moving (compaction?) or are missing; try again")


def _refs(item):
    return item.refs if isinstance(item, transforms.Window) else (item,)


def _object_reads(items):
    from data_app.store.objects.chunks import ObjectReads

    return ObjectReads([ref for item in items for ref in _refs(item)])


def _files(refs):
    """What plain ``ChunkRef`` lists are read through: segment files opened as met, or ranged GETs."""
    return _object_reads(refs) if objects.enabled() else SegmentFiles()


def transformed_compression():
    """How transformed chunks go out, here and through the gateway: LZ4 (smaller) or uncompressed (no
    compression time: faster on fast links), by ``RTA_DATA_TRANSFORMED_COMPRESSION``."""
    return TRANSFORMED_COMPRESSION[settings.RTA_DATA_TRANSFORMED_COMPRESSION]


def open_identity(identity, kind, channels=None, start=None, end=None):
    """The stored chunks of one data identity, unchanged (the fast path)."""
    check_request(kind, start, end)
    return open_stream(
        kind, [identity], lambda: [(ref, None) for ref in find_chunks(identity, kind, channels, start, end)]
    )


class ChunkStream:
    """Planned chunks, their files open. Iterate for the wire format, or call ``lists()``; then ``close()``.

    Iterating yields blocks of roughly ``BLOCK_SIZE`` bytes and closes the files
    at the end; ``close()`` is safe to call at any time (Django calls it when a
    streaming response ends, even one never iterated).
    """

    def __init__(self, kind, items, files, block_size=BLOCK_SIZE):
        self.kind, self.items, self.files, self.block_size = kind, items, files, block_size
        # Merged windows narrower than a chunk share it with their neighbours: unpack it once.
        self._unpacked = OrderedDict()
        self._headers = None  # by ``wire_length``, for ``__iter__`` to reuse
        self.transformed_compression = transformed_compression()

    def __len__(self):
        return len(self.items)

    def close(self):
        self.files.close()

    def wire_length(self):
        """Bytes the wire format will take when every chunk goes out as stored, else None (transforms)."""
        if any(transform is not None for _, transform in self.items):
            return None
        framer = wire.ChunkStreamWriter()
        self._headers = [
            framer.header(
                ref.start_time, ref.end_time, ref.channel_ids, ref.compression, ref.unpacked_length, ref.packed_length
            )
            for ref, _ in self.items
        ]
        return sum(map(len, self._headers)) + sum(ref.packed_length for ref, _ in self.items)

    def __iter__(self):
        try:
            framer = wire.ChunkStreamWriter()
            header, read, kind, block_size = framer.header, self.files.read, self.kind, self.block_size
            pending, size, stored_headers = [], 0, self._headers
            for index, (ref, transform) in enumerate(self.items):
                if transform is None:
                    body = read(ref)
                    if stored_headers is not None:  # every chunk goes out as stored: headers made once
                        head = stored_headers[index]
                    else:
                        head = header(
                            ref.start_time,
                            ref.end_time,
                            ref.channel_ids,
                            ref.compression,
                            ref.unpacked_length,
                            ref.packed_length,
                        )
                else:
                    out = self._transformed(ref, transform, kind, read)
                    if out is None:
                        continue
                    compression = self.transformed_compression
                    body = wire.compress(out.payload) if compression == wire.COMPRESSION_LZ4 else out.payload
                    head = header(out.start, out.end, out.channel_ids, compression, len(out.payload), len(body))
                pending += (head, body)
                size += len(head) + len(body)
                if size >= block_size:
                    yield b"".join(pending)
                    pending, size = [], 0
            if pending:
                yield b"".join(pending)
        finally:
            self.close()

    def _transformed(self, item, transform, kind, read):
        if isinstance(item, transforms.Window):
            return transforms.merge(kind, item, [self._unpack_shared(ref, read) for ref in item.refs])
        return transforms.apply_packed(kind, read(item), item.unpacked_length, item.compression, transform, item)

    def _unpack_shared(self, ref, read, keep=32):
        key = (ref.file, ref.offset)
        payload = self._unpacked.get(key)
        if payload is None:
            payload = self._unpacked[key] = wire.unpack(read(ref), ref.unpacked_length, ref.compression)
            if len(self._unpacked) > keep:
                self._unpacked.popitem(last=False)
        return payload

    def lists(self):
        """One decoded list message per chunk (chunks a transform emptied are left out)."""
        list_type, read, kind = wire.LIST_TYPES[self.kind], self.files.read, self.kind
        try:
            for ref, transform in self.items:
                if transform is None:
                    yield list_type.FromString(wire.unpack(read(ref), ref.unpacked_length, ref.compression))
                else:
                    out = self._transformed(ref, transform, kind, read)
                    if out is not None:
                        yield list_type.FromString(out.payload)
        finally:
            self.close()


# --- plain ``ChunkRef`` lists (no protection against a concurrent compaction) ---------------------


def wire_stream(refs, block_size=BLOCK_SIZE):
    """The chunked wire format for ``refs``, files opened as met (the fast path needs no kind)."""
    refs = list(refs)
    return iter(ChunkStream(None, [(ref, None) for ref in refs], _files(refs), block_size))


def decoded_lists(kind, refs):
    """One decoded list message per chunk, files opened as met."""
    refs = list(refs)
    return ChunkStream(kind, [(ref, None) for ref in refs], _files(refs)).lists()
