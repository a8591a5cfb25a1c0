"""The ``application/vnd.mat.protobuf+chunked`` wire format (spec §8).

Each chunk on the wire is a 4-byte signed little-endian header length, a
``ChunkTransferHeader`` and ``packed_length`` payload bytes: one serialized data
list, as a raw LZ4 block (no size prefix; the size is ``unpacked_length``) when
compressed. Header times and the compression mode are deltas against the
previous chunk of the same response (the first chunk against zero). A time
delta is taken modulo 2^64 as an int64 (two's complement, what int64 addition
in any client gives back): from a chunk near the int64 minimum to one near the
maximum the difference does not fit a sint64, yet the sum is exact.
"""

import struct
from dataclasses import dataclass, field

import lz4.block
from rta.model import data_pb2
from rta.model.net import chunks_pb2

MEDIA_TYPE = "application/vnd.mat.protobuf+chunked"
COMPRESSION_NONE = 0
COMPRESSION_LZ4 = 1
_LENGTH = struct.Struct("<i")


def _int64(value):
    """``value`` wrapped to int64 (modulo 2^64, two's complement)."""
    return (value + 2**63) % 2**64 - 2**63


LIST_TYPES = {
    "timestamped": data_pb2.TimestampedDataList,
    "periodic": data_pb2.PeriodicDataList,
    "row": data_pb2.RowDataList,
    "events": data_pb2.EventsList,
}


def compress(data, level=0):
    """A raw LZ4 block of ``data``: LZ4's fast mode at level 0, its high-compression mode at 1-12.

    Every level produces the standard block format any LZ4 decoder reads; higher
    levels spend more time for smaller blocks (``bench/data.py`` measures both).
    """
    if level <= 0:
        return lz4.block.compress(data, store_size=False)
    return lz4.block.compress(data, mode="high_compression", compression=min(level, 12), store_size=False)


def decompress(data, unpacked_length):
    if unpacked_length == 0:
        return b""
    return lz4.block.decompress(data, uncompressed_size=unpacked_length)


def pack(data, compression=COMPRESSION_LZ4, level=0):
    """``data`` encoded for storage/transfer under ``compression`` (``level``: see ``compress``)."""
    if compression == COMPRESSION_LZ4:
        return compress(data, level)
    if compression == COMPRESSION_NONE:
        return bytes(data)
    raise ValueError(f"unknown compression {compression}")


def unpack(packed, unpacked_length, compression):
    if compression == COMPRESSION_LZ4:
        return decompress(packed, unpacked_length)
    if compression == COMPRESSION_NONE:
        return bytes(packed)
    raise ValueError(f"unknown compression {compression}")


class ChunkStreamWriter:
    """Frames chunks for one response, tracking the previous chunk for the deltas."""

    def __init__(self):
        self.prev_start = 0
        self.prev_duration = 0
        self.prev_compression = COMPRESSION_NONE

    def header(self, start, end, channel_ids, compression, unpacked_length, packed_length):
        """The framing (length prefix + header) to write before ``packed_length`` payload bytes."""
        duration = end - start
        header = chunks_pb2.ChunkTransferHeader(
            chunk_start_time_delta=_int64(start - self.prev_start),
            chunk_duration_delta=_int64(duration - self.prev_duration),
            channel_ids=channel_ids,
            compression_delta=compression - self.prev_compression,
            unpacked_length=unpacked_length,
            packed_length=packed_length,
        )
        self.prev_start, self.prev_duration, self.prev_compression = start, duration, compression
        body = header.SerializeToString()
        return _LENGTH.pack(len(body)) + body

    def chunk(self, start, end, channel_ids, payload, compression=COMPRESSION_LZ4):
        """A whole framed chunk from an unpacked serialized list."""
        packed = pack(payload, compression)
        return self.header(start, end, channel_ids, compression, len(payload), len(packed)) + packed


@dataclass
class DecodedChunk:
    start: int
    end: int
    channel_ids: list
    compression: int
    unpacked_length: int
    packed: bytes = field(repr=False)

    @property
    def payload(self):
        return unpack(self.packed, self.unpacked_length, self.compression)

    def decode(self, kind):
        message = LIST_TYPES[kind]()
        message.ParseFromString(self.payload)
        return message


class ChunkFormatError(ValueError):
    pass


def read_chunks(data):
    """Decode a whole chunked response body into ``DecodedChunk``s (absolute times, modes)."""
    view = memoryview(data)
    pos = 0
    start = duration = compression = 0
    chunks = []
    while pos < len(view):
        if pos + 4 > len(view):
            raise ChunkFormatError("truncated header length")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > len(view):
            raise ChunkFormatError("truncated header")
        header = chunks_pb2.ChunkTransferHeader()
        header.ParseFromString(bytes(view[pos : pos + length]))
        pos += length
        if pos + header.packed_length > len(view):
            raise ChunkFormatError("truncated payload")
        packed = bytes(view[pos : pos + header.packed_length])
        pos += header.packed_length
        start = _int64(start + header.chunk_start_time_delta)
        duration = _int64(duration + header.chunk_duration_delta)
        compression += header.compression_delta
        chunks.append(
            DecodedChunk(start, start + duration, list(header.channel_ids), compression, header.unpacked_length, packed)
        )
    return chunks
