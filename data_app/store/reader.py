"""Index look-ups and reads of stored chunks.

``find_chunks`` returns the index rows a request needs, whole chunks
overlapping ``[start, end]`` (a request is rounded outwards to chunk
boundaries), in time order per channel. ``wire_stream`` is the fast path: the
stored bytes go out behind a freshly written ``ChunkTransferHeader`` without
being decoded. ``decoded_lists`` decodes each chunk into its list message.
"""
from dataclasses import dataclass

from data_app import wire
from data_app.models import Chunk
from data_app.store.segments import SegmentReader
from rta_site.errors import InvalidArgument

KINDS = ("timestamped", "periodic", "row", "events")


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


_FIELDS = ("channel_ids", "start_time", "end_time", "file", "offset", "packed_length", "unpacked_length",
           "compression")


def find_chunks(identity, kind, channels=None, start=None, end=None):
    """Index rows (as ``ChunkRef``s) for ``identity``/``kind``; evaluated now, not lazily."""
    if kind not in KINDS:
        raise InvalidArgument(f"unknown data kind {kind!r}")
    if start is not None and end is not None and start > end:
        raise InvalidArgument(f"start {start} is after end {end}")
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


def wire_stream(refs, block_size=256 * 1024):
    """The chunked wire format for ``refs``, yielded in blocks of roughly ``block_size`` bytes."""
    framer = wire.ChunkStreamWriter()
    pending, size = [], 0
    with SegmentReader() as reader:
        for ref in refs:
            header = framer.header(ref.start_time, ref.end_time, ref.channel_ids, ref.compression,
                                   ref.unpacked_length, ref.packed_length)
            body = reader.read(ref.file, ref.offset, ref.packed_length)
            pending += (header, body)
            size += len(header) + len(body)
            if size >= block_size:
                yield b"".join(pending)
                pending, size = [], 0
    if pending:
        yield b"".join(pending)


def decoded_lists(kind, refs):
    """One decoded list message per chunk."""
    with SegmentReader() as reader:
        for ref in refs:
            message = wire.LIST_TYPES[kind]()
            message.ParseFromString(
                wire.unpack(reader.read(ref.file, ref.offset, ref.packed_length), ref.unpacked_length,
                            ref.compression)
            )
            yield message
