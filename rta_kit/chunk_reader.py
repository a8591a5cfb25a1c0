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

A relay that sends most chunks on unchanged passes ``relayable`` to ``feed``:
consecutive complete chunks it accepts come back as one ``Run``, their
framing included, so they cost one header parse each and no copy: behind a
first header the relay writes itself, the headers of the run's other chunks
are still right (their deltas are against the chunk before, in the run too).
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


class Run:
    """Consecutive complete chunks sent on as received (``ChunkReader.feed`` with ``relayable``).

    ``framed`` holds them with their framing. A relay whose previous chunk
    is the one before the run (its framing state is ``prev``, the received
    stream's ``(start, duration, compression)`` before the run) sends
    ``framed`` as it is; any other writes a header of its own for the first
    chunk (``first``: ``ChunkStreamWriter.header``'s arguments) and then
    ``framed[payload_at:]``. Either way its state is ``last`` after the run.
    """

    __slots__ = ("framed", "payload_at", "prev", "first", "last", "count")

    def __init__(self, framed, payload_at, prev, first, last, count):
        self.framed, self.payload_at, self.prev, self.first, self.last, self.count = (
            framed,
            payload_at,
            prev,
            first,
            last,
            count,
        )

    def __repr__(self):
        return f"Run({self.count} chunks, {len(self.framed)} bytes)"


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_parse_header = chunks_pb2.ChunkTransferHeader.FromString


class ChunkReader:
    """Parses one response body fed piece by piece; see the module docstring."""

    def __init__(self):
        self._held = bytearray()  # the start of an incomplete chunk
        self._header = None  # the parsed header of that chunk, once it is all in
        self._header_end = 0  # where its payload starts in ``_held``
        self._start = self._duration = self._compression = 0

    def feed(self, data, relayable=None):
        """The chunks ``data`` completes (a list, maybe empty): ``ReceivedChunk``s, and ``Run``s of the
        non-empty chunks for which ``relayable(start, end, channel_ids)`` is true, when it is given."""
        if not data:
            return []
        immutable = isinstance(data, bytes)
        view = memoryview(data)
        items = []
        if self._held:
            # Only the rest of the held chunk is copied; what follows it is parsed where it lies.
            taken = self._complete_held(view)
            if taken is None:
                return []
            held, self._held = bytes(self._held), bytearray()
            items = self._parse(memoryview(held), True, relayable)
            view = view[taken:]
            if not view:
                return items
        return items + self._parse(view, immutable, relayable)

    def _complete_held(self, view):
        """Append to the held chunk from ``view`` until it is whole: the bytes taken, or None (all taken) if not."""
        held, pos, size = self._held, 0, len(view)
        if self._header is None:
            if len(held) < 4:
                pos = min(4 - len(held), size)
                held += view[:pos]
                if len(held) < 4:
                    return None
            (length,) = _LENGTH.unpack_from(held, 0)
            if length < 0 or length > MAX_HEADER_BYTES:
                raise ChunkFormatError(f"chunk header length {length} is out of range")
            take = min(4 + length - len(held), size - pos)
            if take > 0:
                held += view[pos : pos + take]
                pos += take
            if len(held) < 4 + length:
                return None
            header = _parse_header(bytes(held[4 : 4 + length]))
            if header.packed_length < 0 or header.packed_length > MAX_PACKED_BYTES:
                raise ChunkFormatError(f"chunk payload length {header.packed_length} is out of range")
            self._header, self._header_end = header, 4 + length
        need = self._header_end + self._header.packed_length - len(held)
        take = min(need, size - pos)
        held += view[pos : pos + take]
        return pos + take if take == need else None

    def _parse(self, view, immutable, relayable):
        """The chunks in ``view`` (from a chunk's start); the incomplete one at its end is held."""
        items = []
        pos, size = 0, len(view)
        start, duration, compression = self._start, self._duration, self._compression
        run_from = None  # where the framing of the open run's first chunk starts
        while True:
            if self._header is None:
                if size - pos < 4:
                    break
                (length,) = _LENGTH.unpack_from(view, pos)
                if length < 0 or length > MAX_HEADER_BYTES:
                    raise ChunkFormatError(f"chunk header length {length} is out of range")
                header_end = pos + 4 + length
                if header_end > size:
                    break
                header = _parse_header(view[pos + 4 : header_end])
                if header.packed_length < 0 or header.packed_length > MAX_PACKED_BYTES:
                    raise ChunkFormatError(f"chunk payload length {header.packed_length} is out of range")
            else:
                header, header_end = self._header, pos + self._header_end
            end = header_end + header.packed_length
            if end > size:
                self._header, self._header_end = header, header_end - pos
                break
            self._header = None
            before = (start, duration, compression)
            start += header.chunk_start_time_delta
            duration += header.chunk_duration_delta
            if not _INT64_MIN <= start <= _INT64_MAX:
                start = wire._int64(start)
            if not _INT64_MIN <= duration <= _INT64_MAX:
                duration = wire._int64(duration)
            compression += header.compression_delta
            channel_ids = header.channel_ids
            if relayable is not None and header.unpacked_length and relayable(start, start + duration, channel_ids):
                if run_from is None:
                    run_from, run_prev, run_count = pos, before, 0
                    payload_at = header_end - pos
                    first = (
                        start,
                        start + duration,
                        list(channel_ids),
                        compression,
                        header.unpacked_length,
                        header.packed_length,
                    )
                run_count += 1
            else:
                if run_from is not None:
                    framed = view[run_from:pos] if immutable else bytes(view[run_from:pos])
                    items.append(Run(framed, payload_at, run_prev, first, before, run_count))
                    run_from = None
                # Slices of immutable bytes are kept as they are (no copy); anything else may change under us.
                packed = view[header_end:end] if immutable else bytes(view[header_end:end])
                items.append(
                    ReceivedChunk(
                        start, start + duration, list(channel_ids), compression, header.unpacked_length, packed
                    )
                )
            pos = end
        if run_from is not None:
            framed = view[run_from:pos] if immutable else bytes(view[run_from:pos])
            items.append(Run(framed, payload_at, run_prev, first, (start, duration, compression), run_count))
        self._start, self._duration, self._compression = start, duration, compression
        if pos < size:
            self._held = bytearray(view[pos:])
        return items

    @property
    def pending(self):
        """Bytes held of a chunk not yet complete."""
        return len(self._held)

    def close(self):
        """Raise ``ChunkFormatError`` unless the body ended on a chunk boundary."""
        if self._held or self._header is not None:
            raise ChunkFormatError(f"the chunk stream ends inside a chunk ({len(self._held)} bytes of it)")
