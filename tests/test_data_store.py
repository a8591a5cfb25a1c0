"""The chunk writer/index directly (no gRPC)."""

import struct
import time

import pytest
from rta.model import data_pb2

from data_app.models import Chunk
from data_app.services.channels import parse_channels
from data_app.store import reader, segments
from data_app.store.writer import SECOND as S
from data_app.store.writer import ChunkWriter, choose_span
from rta_core.errors import InvalidArgument
from rta_kit import items

T0 = 1_700_000_000 * S
pytestmark = pytest.mark.django_db(transaction=True)


def test_choose_span():
    assert choose_span(64 * 1024, 100 * S) == 100 * S  # 655 B/s
    assert choose_span(64 * 1024, 10 * S) == 10 * S
    assert choose_span(64 * 1024, 3 * S) == 2 * S
    assert choose_span(200 * 1024, S) == S  # over 64 KiB even at 1 s: 1 s
    assert choose_span(3 * 1024 * 1024, S) == S // 5  # a 1 s list would pass 1 MiB: below 1 s
    assert choose_span(10 * 1024 * 1024, S) == S // 10
    assert choose_span(100 * 1024 * 1024, S) == S // 10  # too fast for any class: the smallest
    assert choose_span(100, 0) == 10 * S  # nothing to measure


def test_timestamped_split_keeps_times_and_windows():
    deltas = [0] + [7] * 299  # scale 1 ms, 300 samples over 2.093 s
    item = data_pb2.TimestampedData(
        channel_id=4,
        start_timestamp=T0 - 500_000_000,
        timestamp_deltas_scale=1_000_000,
        timestamp_deltas=deltas,
        buffer=struct.pack("<300f", *range(300)),
    )
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


def test_budget_flush_keeps_newest_window_and_files_are_hashed(settings, store_kind):
    writer = ChunkWriter("odd/../identity", budget_bytes=20_000)
    for second in range(40):  # one 2 KiB item per second: 10 s span at ~2 KiB/s, budget hit every ~10 s
        writer.add(
            "periodic",
            data_pb2.PeriodicData(
                channel_id=1, start_timestamp=T0 + second * S, interval=S // 1024, samples=1024, buffer=b"\1\0" * 1024
            ),
        )
    writer.wait()  # budget flushes run in the background
    assert Chunk.objects.count() >= 1
    assert writer.buffered_bytes > 0  # the newest window is still buffered
    writer.flush()
    rows = list(Chunk.objects.order_by("start_time"))
    assert all(r.span == rows[0].span for r in rows)
    assert sum(r.sample_count for r in rows) == 40 * 1024
    # Each window is stored once, each list within budget.
    assert len({r.window_start for r in rows}) == len(rows)
    assert all(r.unpacked_length <= 128 * 1024 for r in rows)
    if store_kind == "s3":  # one object per flush, named by the identity's hash
        assert all(r.file.startswith("chunks/") and "identity" not in r.file for r in rows)
        assert not (settings.RTA_DATA_PATH / "chunks").exists()
        return
    files = list((settings.RTA_DATA_PATH / "chunks").rglob("*"))
    assert all("identity" not in f.name for f in files)
    assert {r.file for r in rows} == {segments.segment_name("odd/../identity")}


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_row_data_by_channel_set():
    writer = ChunkWriter("rows")
    for i in range(5):
        writer.add(
            "row", data_pb2.RowData(channel_ids=[1, 0x20], timestamp=T0 + i, buffer=struct.pack("<hd", i, i / 2))
        )
        writer.add("row", data_pb2.RowData(channel_ids=[3], timestamp=T0 + i, buffer=struct.pack("<h", i)))
    writer.flush()
    refs = reader.find_chunks("rows", "row", parse_channels("20"))
    assert [r.channel_ids for r in refs] == [[1, 0x20]]
    (lst,) = reader.decoded_lists("row", refs)
    assert [r.timestamp for r in lst.row_data] == [T0 + i for i in range(5)]
    assert len(reader.find_chunks("rows", "row", parse_channels("1-3"))) == 2


# --- items: encoding, sizes -------------------------------------------------------------------


def _periodic(ch, start, values, interval=S // 1000, fmt="h"):
    return data_pb2.PeriodicData(
        channel_id=ch,
        start_timestamp=start,
        interval=interval,
        samples=len(values),
        buffer=struct.pack(f"<{len(values)}{fmt}", *values),
    )


def _timestamped(ch, start, deltas, values, scale=1000):
    return data_pb2.TimestampedData(
        channel_id=ch,
        start_timestamp=start,
        timestamp_deltas_scale=scale,
        timestamp_deltas=deltas,
        buffer=struct.pack(f"<{len(values)}d", *values),
    )


@pytest.mark.parametrize(
    "channel, start, interval, samples, width",
    [
        (0x10, T0, 1_000_000, 10_000, 2),
        (0, T0 + 7, 3, 129, 8),  # channel 0 and a 1-sample tail
        (5, -128 * 1000 * 3, 1000, 1000, 4),  # an item starts at exactly 0 (a field left out)
        (1, -5 * S, 7, 300, 1),  # negative times
        (2**32 - 1, 2**62, 2**40, 256, 2),  # large varints
        (3, T0, -1, 1, 2),  # one sample, negative (meaningless) interval
        (4, 0, 0, 1, 8),  # every field that can be left out
    ],
)
def test_periodic_items_are_encoded_as_protobuf_does(channel, start, interval, samples, width):
    data = bytes(range(256)) * (samples * width // 256 + 1)
    run = items.PeriodicRun(start, interval, width, data[: samples * width], samples)
    encoded = items._periodic_entries(channel, run, 128)
    expected = data_pb2.PeriodicDataList()
    for i in range(0, samples, 128):
        n = min(128, samples - i)
        expected.periodic_data.add(
            channel_id=channel,
            start_timestamp=start + i * interval,
            interval=interval,
            samples=n,
            buffer=data[i * width : (i + n) * width],
        )
    assert bytes(encoded) == expected.SerializeToString()


def _stored_items(identity, kind, channel):
    """Every stored item of one channel, chunk by chunk: [(chunk row, [item, ...]), ...]."""
    refs = reader.find_chunks(identity, kind, parse_channels(f"{channel:X}"))
    lists = list(reader.decoded_lists(kind, refs))
    return [(ref, list(getattr(lst, items.LIST_FIELDS[kind]))) for ref, lst in zip(refs, lists)]


def _periodic_samples(stored):
    out = []
    for _ref, lst in stored:
        for item in lst:
            values = struct.unpack(f"<{item.samples}h", item.buffer)
            out += [(item.start_timestamp + i * item.interval, v) for i, v in enumerate(values)]
    return out


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_items_hold_up_to_128_samples_and_bursts_are_joined():
    writer = ChunkWriter("sizes")
    ms = S // 1000
    for n in range(30):  # 100-sample bursts that continue one another: joined into full items
        writer.add("periodic", _periodic(1, T0 + n * 100 * ms, [n] * 100))
    writer.add("periodic", _periodic(2, T0, list(range(-12_500, 12_500))))  # one 25,000-sample item
    deltas = [0] + [1000 + i % 7 for i in range(11_999)]
    writer.add("timestamped", _timestamped(3, T0, deltas, [float(i) for i in range(12_000)]))
    writer.flush()
    for channel, kind, total in ((1, "periodic", 3000), (2, "periodic", 25_000), (3, "timestamped", 12_000)):
        stored = _stored_items("sizes", kind, channel)
        counts = [items.sample_count(kind, item) for _ref, lst in stored for item in lst]
        assert sum(counts) == total
        assert max(counts) <= 128
        # Only the last item of each chunk window may be short: the input allows full items everywhere else.
        assert sum(1 for c in counts if c < 128) <= len(stored)
        for ref, lst in stored:
            row = Chunk.objects.get(identity="sizes", kind=kind, channel=channel, start_time=ref.start_time)
            assert S <= row.span <= 100 * S
            assert row.window_start <= row.start_time <= row.end_time < row.window_start + row.span
            assert row.unpacked_length <= 80 * 1024  # ~64 KiB lists (the span is chosen for them)
            assert (items.start_time(kind, lst[0]), items.end_time(kind, lst[-1])) == (ref.start_time, ref.end_time)
    assert _periodic_samples(_stored_items("sizes", "periodic", 1)) == [(T0 + i * ms, i // 100) for i in range(3000)]


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_rejected_items_leave_nothing_buffered():
    writer = ChunkWriter("bad")
    writer.add("periodic", _periodic(1, T0, [1, 2]))
    with pytest.raises(InvalidArgument, match="width"):
        writer.add("periodic", _periodic(1, T0 + S, [1.5], fmt="d"))  # the channel's samples are 2 bytes
    with pytest.raises(InvalidArgument, match="overflow"):
        writer.add("periodic", _periodic(2, 2**63 - 10, [1, 2, 3], interval=S))
    with pytest.raises(InvalidArgument, match="negative"):
        writer.add("timestamped", _timestamped(3, T0, [0, 5, -1], [1.0, 2.0, 3.0]))
    writer.flush()
    assert list(Chunk.objects.values_list("channel", "sample_count")) == [(1, 2)]


# --- flushing: age threshold, background flushes --------------------------------------------


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_age_threshold_flushes_data_that_waited_too_long():
    writer = ChunkWriter("aged", flush_age=0.2)
    writer.add("periodic", _periodic(1, T0, [1, 2, 3]))
    assert not Chunk.objects.exists() and writer.buffered_bytes > 0
    time.sleep(0.3)
    writer.add("periodic", _periodic(2, T0, [4]))  # channel 2 is new: it has not waited
    writer.wait()  # age flushes run in the background
    assert list(Chunk.objects.values_list("channel", "sample_count")) == [(1, 3)]
    assert writer.buffered_bytes > 0
    writer.flush()
    assert sorted(Chunk.objects.values_list("channel", "sample_count")) == [(1, 3), (2, 1)]


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_age_threshold_zero_is_off():
    writer = ChunkWriter("not-aged", flush_age=0)
    writer.add("periodic", _periodic(1, T0, [1, 2, 3]))
    time.sleep(0.05)
    writer.add("periodic", _periodic(1, T0 + 3 * S // 1000, [4]))
    writer.wait()
    assert not Chunk.objects.exists()
    writer.discard()
    assert writer.buffered_bytes == 0


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_failed_background_flush_fails_the_stream_and_keeps_stored_data():
    first = ChunkWriter("widths")
    first.add("periodic", _periodic(1, T0, [1, 2, 3], fmt="i"))  # 4-byte samples
    first.flush()
    before = list(Chunk.objects.values_list("offset", "packed_length", "sample_count"))
    second = ChunkWriter("widths", budget_bytes=4000)
    with pytest.raises(InvalidArgument, match="mixes sample widths"):
        for n in range(100):  # 2-byte samples in the same window: the background flush must refuse them
            second.add("periodic", _periodic(1, T0 + S + n * 500 * S // 1000, [0] * 500))
        second.flush()
    assert list(Chunk.objects.values_list("offset", "packed_length", "sample_count")) == before


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_a_flush_encoding_beside_the_one_before_it_merges_into_what_that_one_writes(monkeypatch):
    # The first background flush is held up, so the second encodes window 0 while the first is still
    # writing it; the second must then merge into the chunk the first wrote, not overwrite it.
    ms = S // 1000
    write_windows, encode = ChunkWriter._write_windows, ChunkWriter._encode
    calls = {"encode": 0, "write": 0}

    def slow_first_write(self, *args):
        calls["write"] += 1
        if calls["write"] == 1:
            time.sleep(0.3)
        return write_windows(self, *args)

    def counted_encode(self, windows):
        calls["encode"] += 1
        return encode(self, windows)

    monkeypatch.setattr(ChunkWriter, "_write_windows", slow_first_write)
    monkeypatch.setattr(ChunkWriter, "_encode", counted_encode)
    writer = ChunkWriter("overlapped-flushes", budget_bytes=40_000, flush_age=0)
    writer._spans[("timestamped", 3)] = S  # 1 s windows
    # Two seconds on a 1 ms grid, then the same two seconds half a millisecond later (another grid).
    writer.add("timestamped", _timestamped(3, T0, [0] + [1000] * 1999, [1.0] * 2000))
    writer.add("timestamped", _timestamped(3, T0 + ms // 2, [0] + [1000] * 1999, [2.0] * 2000))
    writer.flush()
    assert calls["encode"] >= 1  # the second flush did encode beside the first
    stored = _assert_no_overlap("overlapped-flushes", "timestamped", 3)
    samples = [
        (t, v)
        for _ref, lst in stored
        for item in lst
        for t, v in zip(items.times("timestamped", item), struct.unpack(f"<{len(item.buffer) // 8}d", item.buffer))
    ]
    expected = sorted([(T0 + i * ms, 1.0) for i in range(2000)] + [(T0 + ms // 2 + i * ms, 2.0) for i in range(2000)])
    assert samples == expected
    assert sorted(Chunk.objects.filter(identity="overlapped-flushes").values_list("window_start", "sample_count")) == [
        (T0, 2000),
        (T0 + S, 2000),
    ]


# --- non-overlap --------------------------------------------------------------------------------


def _assert_no_overlap(identity, kind, channel):
    """Chunks and items of one channel, in serving order, strictly follow one another in time."""
    stored = _stored_items(identity, kind, channel)
    bounds = [(items.start_time(kind, item), items.end_time(kind, item)) for _ref, lst in stored for item in lst]
    assert all(start <= end for start, end in bounds)
    assert all(a[1] < b[0] for a, b in zip(bounds, bounds[1:])), bounds
    chunks = [(ref.start_time, ref.end_time) for ref, _ in stored]
    assert all(a[1] < b[0] for a, b in zip(chunks, chunks[1:]))
    return stored


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_no_items_or_chunks_overlap_after_rewrites_and_close():
    from sessions_app.services.updates import create_or_update_session

    create_or_update_session("overlaps", [("set_state", 2)])
    ms = S // 1000
    # Stream 1: periodic data, flushed.
    one = ChunkWriter("overlaps")
    one.add("periodic", _periodic(1, T0, list(range(1000))))
    one.add("timestamped", _timestamped(2, T0, [0] + [1000] * 499, [1.0] * 500, scale=1000))  # 1 kHz
    one.add("row", data_pb2.RowData(channel_ids=[7], timestamp=T0 + 5, buffer=b"\1"))
    one.add("events", data_pb2.Event(event_definition_id=1, timestamp=T0 + 5, status_text="a"))
    one.flush()
    # Stream 2 re-sends part of it with other values (a client retrying), overlaps it on another
    # phase of the same interval, and re-sends the row and the event.
    two = ChunkWriter("overlaps")
    two.add("periodic", _periodic(1, T0 + 500 * ms, [-1] * 1000))  # rewrite 500..999, extend
    two.add("periodic", _periodic(1, T0 + 3 * S + ms // 2, [7] * 10))  # interleaved, half a step off
    two.add("timestamped", _timestamped(2, T0 + 250 * ms, [0] + [500] * 99, [2.0] * 100, scale=1000))
    two.add("row", data_pb2.RowData(channel_ids=[7], timestamp=T0 + 5, buffer=b"\2"))
    two.add("events", data_pb2.Event(event_definition_id=1, timestamp=T0 + 5, status_text="a"))
    two.add("events", data_pb2.Event(event_definition_id=2, timestamp=T0 + 5, status_text="b"))
    two.flush()
    create_or_update_session("overlaps", [("set_state", 4)])  # closed

    samples = _periodic_samples(_assert_no_overlap("overlaps", "periodic", 1))
    expected = {T0 + i * ms: i for i in range(500)}
    expected.update({T0 + (500 + i) * ms: -1 for i in range(1000)})  # the later write wins
    expected.update({T0 + 3 * S + ms // 2 + i * ms: 7 for i in range(10)})
    assert samples == sorted(expected.items())
    stored = _assert_no_overlap("overlaps", "timestamped", 2)
    times = [t for _ref, lst in stored for item in lst for t in items.times("timestamped", item)]
    assert times == sorted(set(times)) and len(times) == 500 + 50  # 100 rewritten: 50 on the old grid
    (lst,) = reader.decoded_lists("row", reader.find_chunks("overlaps", "row"))
    assert [(r.timestamp, r.buffer) for r in lst.row_data] == [(T0 + 5, b"\2")]
    (events,) = reader.decoded_lists("events", reader.find_chunks("overlaps", "events"))
    assert [(e.event_definition_id, e.status_text) for e in events.events] == [(1, "a"), (2, "b")]


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_merge_of_a_big_resend_stays_on_the_grid():
    ms = S // 1000
    one = ChunkWriter("resend")
    one.add("periodic", _periodic(1, T0, [1] * 20_000))
    one.flush()
    two = ChunkWriter("resend")
    two.add("periodic", _periodic(1, T0 + 5 * S, [2] * 20_000))  # half of it already stored
    two.flush()
    stored = _assert_no_overlap("resend", "periodic", 1)
    assert all(item.interval == ms for _ref, lst in stored for item in lst)
    assert _periodic_samples(stored) == [(T0 + i * ms, 1 if i < 5000 else 2) for i in range(25_000)]


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_concurrent_writers_of_one_identity_merge_their_windows():
    import threading

    from django.db import connection

    ms = S // 1000
    errors = []

    def write(offset):
        try:
            writer = ChunkWriter("together")
            for n in range(20):  # the two writers alternate 50 ms bursts inside the same windows
                writer.add("periodic", _periodic(1, T0 + (2 * n + offset) * 50 * ms, [offset] * 50))
                if n % 5 == 4:
                    writer.flush()
            writer.flush()
        except Exception as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    samples = _periodic_samples(_assert_no_overlap("together", "periodic", 1))
    assert samples == [(T0 + i * ms, (i // 50) % 2) for i in range(2000)]


def test_appender_holds_the_lock_and_follows_a_removed_segment():
    """The protocol compaction relies on: whoever removes a segment holds its lock first."""
    import threading

    name = segments.segment_name("appender")
    assert segments.append(name, b"old bytes") == 0
    path = segments.chunks_root() / name
    waiting = threading.Event()
    offsets = []

    def second_writer():
        waiting.set()
        with segments.Appender(name) as appender:  # blocks until the remover lets go
            offsets.append(appender.append(b"new"))

    with segments.Appender(name):
        thread = threading.Thread(target=second_writer)
        thread.start()
        waiting.wait()
        time.sleep(0.1)  # let it reach the lock (the test passes either way; this makes it meaningful)
        path.unlink()  # e.g. compaction removing a segment no row points at
    thread.join()
    assert offsets == [0] and path.read_bytes() == b"new"


def test_appender_writes_a_list_of_parts_in_order_without_joining_them():
    import numpy as np

    name = segments.segment_name("appender-parts")
    parts = [bytes([i % 251]) * (i % 7) for i in range(3000)]  # more than one writev takes, some empty
    parts += [memoryview(np.arange(1000, dtype=np.uint8).reshape(10, 100)), bytearray(b"tail")]
    assert segments.append(name, b"head") == 0
    with segments.Appender(name) as appender:
        assert appender.append(parts) == 4
    expected = b"head" + b"".join(bytes(p) if not isinstance(p, memoryview) else p.tobytes() for p in parts)
    assert (segments.chunks_root() / name).read_bytes() == expected
