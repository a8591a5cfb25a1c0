import struct

import pytest
from rta.model import data_pb2
from rta.model.net import chunks_pb2

from rta_kit import wire


def _list(n, start):
    return data_pb2.PeriodicDataList(
        periodic_data=[
            data_pb2.PeriodicData(
                channel_id=3, start_timestamp=start + i * 1000, interval=10, samples=2, buffer=struct.pack("<hh", i, -i)
            )
            for i in range(n)
        ]
    )


def test_round_trip_with_deltas():
    framer = wire.ChunkStreamWriter()
    a, b = _list(50, 1_000_000).SerializeToString(), _list(10, 5_000_000).SerializeToString()
    body = framer.chunk(1_000_000, 1_049_010, [3], a) + framer.chunk(5_000_000, 5_009_010, [3], b)
    # First header by hand: 4-byte LE length, header, payload.
    (length,) = struct.unpack_from("<i", body, 0)
    header = chunks_pb2.ChunkTransferHeader.FromString(body[4 : 4 + length])
    assert header.chunk_start_time_delta == 1_000_000
    assert header.chunk_duration_delta == 49_010
    assert header.compression_delta == 1
    assert header.unpacked_length == len(a)
    assert list(header.channel_ids) == [3]
    chunks = wire.read_chunks(body)
    assert [(c.start, c.end, c.compression) for c in chunks] == [(1_000_000, 1_049_010, 1), (5_000_000, 5_009_010, 1)]
    assert chunks[0].decode("periodic") == _list(50, 1_000_000)
    assert chunks[1].decode("periodic") == _list(10, 5_000_000)
    # Second header: deltas against the first chunk, compression unchanged.
    rest = body[4 + length + header.packed_length :]
    (l2,) = struct.unpack_from("<i", rest, 0)
    h2 = chunks_pb2.ChunkTransferHeader.FromString(rest[4 : 4 + l2])
    assert h2.chunk_start_time_delta == 4_000_000 and h2.chunk_duration_delta == 9_010 - 49_010
    assert h2.compression_delta == 0


def test_lz4_is_raw_block():
    data = b"abc" * 1000
    packed = wire.compress(data)
    import lz4.block

    assert lz4.block.decompress(packed, uncompressed_size=len(data)) == data
    assert wire.decompress(packed, len(data)) == data


def test_uncompressed_and_mode_change():
    framer = wire.ChunkStreamWriter()
    body = framer.chunk(10, 20, [], b"x" * 5, wire.COMPRESSION_LZ4) + framer.chunk(
        30, 30, [], b"y", wire.COMPRESSION_NONE
    )
    chunks = wire.read_chunks(body)
    assert [c.compression for c in chunks] == [1, 0]
    assert chunks[1].payload == b"y" and chunks[1].packed == b"y"


def test_truncated_body_rejected():
    body = wire.ChunkStreamWriter().chunk(0, 1, [1], b"hello" * 20)
    with pytest.raises(wire.ChunkFormatError):
        wire.read_chunks(body[:-3])


@pytest.mark.parametrize("level", [0, 1, 9, 12])
def test_every_lz4_level_is_a_standard_raw_block(level):
    import lz4.block

    data = struct.pack("<4000h", *[(i // 7) % 300 for i in range(4000)])
    packed = wire.pack(data, wire.COMPRESSION_LZ4, level)
    assert lz4.block.decompress(packed, uncompressed_size=len(data)) == data
    assert wire.unpack(packed, len(data), wire.COMPRESSION_LZ4) == data
    if level:
        assert len(packed) <= len(wire.compress(data))  # high compression is never larger here
