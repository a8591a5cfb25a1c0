"""Reading the chunked wire format (spec §8) incrementally, as a response body arrives.

``ChunkReader.feed`` takes the body in pieces of any size (as an HTTP client
hands them over) and returns the chunks completed so far, with absolute
times and compression (the header's deltas summed); ``close`` says whether
the body ended on a chunk boundary. Only the bytes of one incomplete chunk
are ever held, so a response of any size is read in bounded memory.

A ``ReceivedChunk``'s ``packed`` payload is the bytes as received (a
``memoryview`` into the piece fed, or ``bytes``): a relay writes them out
unchanged behind a header of its own, since header times are deltas against
the previous chunk of whichever response carries them. It has the attributes
``rta_kit.transforms`` reads of a stored chunk (``start_time``, ``end_time``,
``channel_ids``), so a received chunk is transformed like a stored one.
"""

import struct

from rta.model.net import chunks_pb2

from rta_kit import wire
from rta_kit.wire import ChunkFormatError

_LENGTH = struct.Struct("<i")
MAX_HEADER_BYTES = 1 << 20  # a header lists channel ids; a longer one is not a chunk stream
MAX_PACKED_BYTES = 64 << 20  # a list must be <= 4 MiB before compression (§8): generous beyond that


class ReceivedChunk:
    __slots__ = ("start_time", "end_time", "channel_ids", "compression", "unpacked_length", "packed")

    def __init__(self, start_time, end_time, channel_ids, compression, unpacked_length, packed):
        self.start_time, self.end_time, self.channel_ids = start_time, end_time, channel_ids
        self.compression, self.unpacked_length, self.packed = compression, unpacked_length, packed

    @property
    def channel(self):
        """The channel of a periodic or timestamped chunk (its one channel id)."""
        return self.channel_ids[0] if self.channel_ids else 0

    @property
    def payload(self):
        """The serialized list, decompressed."""
        return wire.unpack(self.packed, self.unpacked_length, self.compression)

    def decode(self, kind):
        return wire.LIST_TYPES[kind].FromString(self.payload)

    def __repr__(self):
        return (
            f"ReceivedChunk({self.start_time}..{self.end_time}, channels {self.channel_ids}, "
            f"{len(self.packed)} bytes, compression {self.compression})"
        )


class ChunkReader:
    """Parses one response body fed piece by piece; see the module docstring."""

    def __init__(self):
        self._held = bytearray()  # the start of an incomplete chunk
        self._header = None  # the parsed header of that chunk, once it is all in
        self._header_end = 0  # where its payload starts in ``_held``
        self._start = self._duration = self._compression = 0

    def feed(self, data):
        """The chunks ``data`` completes (a list, maybe empty)."""
        if not data:
            return []
        if self._held:
            self._held += data
            if self._header is not None and len(self._held) < self._header_end + self._header.packed_length:
                return []  # a large payload still arriving: nothing to parse yet
            view, immutable = memoryview(bytes(self._held)), True
            self._held = bytearray()
        else:
            view, immutable = memoryview(data), isinstance(data, bytes)
        chunks = []
        pos, size = 0, len(view)
        while True:
            if self._header is None:
                if size - pos < 4:
                    break
                (length,) = _LENGTH.unpack_from(view, pos)
                if length < 0 or length > MAX_HEADER_BYTES:
                    raise ChunkFormatError(f"chunk header length {length} is out of range")
                if size - pos - 4 < length:
                    break
                header = chunks_pb2.ChunkTransferHeader.FromString(view[pos + 4 : pos + 4 + length])
                if header.packed_length < 0 or header.packed_length > MAX_PACKED_BYTES:
                    raise ChunkFormatError(f"chunk payload length {header.packed_length} is out of range")
                self._header, header_end = header, pos + 4 + length
            else:
                header, header_end = self._header, pos + self._header_end
            end = header_end + header.packed_length
            if end > size:
                self._header_end = header_end - pos
                break
            # Slices of immutable bytes are kept as they are (no copy); anything else may change under us.
            packed = view[header_end:end] if immutable else bytes(view[header_end:end])
            chunks.append(self._chunk(header, packed))
            self._header, pos = None, end
        if pos < size:
            self._held = bytearray(view[pos:])
        return chunks

    def _chunk(self, header, packed):
        self._start = wire._int64(self._start + header.chunk_start_time_delta)
        self._duration = wire._int64(self._duration + header.chunk_duration_delta)
        self._compression += header.compression_delta
        return ReceivedChunk(
            self._start,
            self._start + self._duration,
            list(header.channel_ids),
            self._compression,
            header.unpacked_length,
            packed,
        )

    @property
    def pending(self):
        """Bytes held of a chunk not yet complete."""
        return len(self._held)

    def close(self):
        """Raise ``ChunkFormatError`` unless the body ended on a chunk boundary."""
        if self._held or self._header is not None:
            raise ChunkFormatError(f"the chunk stream ends inside a chunk ({len(self._held)} bytes of it)")
