"""The chunk writer/index directly (no gRPC)."""
import struct

import pytest
from rta.model import data_pb2

from data_app.channels import parse_channels
from data_app.models import Chunk
from data_app.store import items, reader, segments
from data_app.store.writer import SECOND as S
from data_app.store.writer import ChunkWriter, choose_span
from rta_site.errors import InvalidArgument

T0 = 1_700_000_000 * S
pytestmark = pytest.mark.django_db(transaction=True)


def test_choose_span():
    assert choose_span(64 * 1024, 100 * S) == 100 * S       # 655 B/s
    assert choose_span(64 * 1024, 10 * S) == 10 * S
    assert choose_span(64 * 1024, 3 * S) == 2 * S
    assert choose_span(10 * 1024 * 1024, S) == S            # too fast for any class: the smallest
    assert choose_span(100, 0) == 10 * S                    # nothing to measure


def test_timestamped_split_keeps_times_and_windows():
    deltas = [0] + [7] * 299  # scale 1 ms, 300 samples over 2.093 s
    item = data_pb2.TimestampedData(channel_id=4, start_timestamp=T0 - 500_000_000, timestamp_deltas_scale=1_000_000,
                                    timestamp_deltas=deltas, buffer=struct.pack("<300f", *range(300)))
    pieces = items.split("timestamped", item, S)
    assert all(len(p.timestamp_deltas) <= 128 and p.timestamp_deltas[0] == 0 for p in pieces)
    assert [t for p in pieces for t in items.times("timestamped", p)] == items.times("timestamped", item)
    assert b"".join(p.buffer for p in pieces) == item.buffer
    for p in pieces:
        assert items.start_time("timestamped", p) // S == items.end_time("timestamped", p) // S


def test_validation():
    with pytest.raises(InvalidArgument):
        items.validate("periodic", data_pb2.PeriodicData(samples=0, buffer=b""))
    with pytest.raises(InvalidArgument):
        items.validate("periodic", data_pb2.PeriodicData(samples=1, buffer=b"\0\0\0"))  # width 3
    with pytest.raises(InvalidArgument):
        items.validate("row", data_pb2.RowData(channel_ids=[], buffer=b""))


def test_budget_flush_keeps_newest_window_and_files_are_hashed(settings):
    writer = ChunkWriter("odd/../identity", budget_bytes=20_000)
    for second in range(40):  # one 2 KiB item per second: 10 s span at ~2 KiB/s, budget hit every ~10 s
        writer.add("periodic", data_pb2.PeriodicData(channel_id=1, start_timestamp=T0 + second * S, interval=S // 1024,
                                                     samples=1024, buffer=b"\1\0" * 1024))
    assert Chunk.objects.count() >= 1
    assert writer.buffered_bytes > 0  # the newest window is still buffered
    writer.flush()
    rows = list(Chunk.objects.order_by("start_time"))
    assert all(r.span == rows[0].span for r in rows)
    assert sum(r.sample_count for r in rows) == 40 * 1024
    # Each window is stored once, each list within budget.
    assert len({r.window_start for r in rows}) == len(rows)
    assert all(r.unpacked_length <= 128 * 1024 for r in rows)
    files = list((settings.RTA_DATA_PATH / "chunks").rglob("*"))
    assert all("identity" not in f.name for f in files)
    assert {r.file for r in rows} == {segments.segment_name("odd/../identity")}


def test_row_data_by_channel_set():
    writer = ChunkWriter("rows")
    for i in range(5):
        writer.add("row", data_pb2.RowData(channel_ids=[1, 0x20], timestamp=T0 + i, buffer=struct.pack("<hd", i, i / 2)))
        writer.add("row", data_pb2.RowData(channel_ids=[3], timestamp=T0 + i, buffer=struct.pack("<h", i)))
    writer.flush()
    refs = reader.find_chunks("rows", "row", parse_channels("20"))
    assert [r.channel_ids for r in refs] == [[1, 0x20]]
    (lst,) = reader.decoded_lists("row", refs)
    assert [r.timestamp for r in lst.row_data] == [T0 + i for i in range(5)]
    assert len(reader.find_chunks("rows", "row", parse_channels("1-3"))) == 2
