"""Live buffer (spec §9): LZ4 container, burst records, the Redis and in-process buffers, writers, trimming."""

import asyncio
import struct
import threading
import time

import lz4.frame
import pytest
import redis
from django.core.management import call_command
from rta.model import data_pb2
from rta.model.net import stream_pb2

from data_app.live import bursts, container, keys
from data_app.live.buffers import Directory, MemoryBuffer, get_buffer
from data_app.live.buffers.redis import RedisBuffer
from data_app.live.publisher import Publisher
from data_app.live.trimmer import trim_streams
from data_app.services.sink import DataSink
from sessions_app.services.updates import create_or_update_session, delete_sessions

S = 1_000_000_000
T0 = 1_800_000_000 * S


def periodic(channel, start, values, interval=1_000_000):
    return data_pb2.PeriodicData(
        channel_id=channel,
        start_timestamp=start,
        interval=interval,
        samples=len(values),
        buffer=struct.pack(f"<{len(values)}h", *values),
    )


def decode(data):
    """Items of a compressed burst as ``(oneof name, value)`` (with plain protobuf and lz4.frame, as a client would)."""
    burst = stream_pb2.StreamDataBurst.FromString(lz4.frame.decompress(data))
    return [(d.WhichOneof("type"), getattr(d, d.WhichOneof("type"))) for d in burst.data]


# --- container and bursts ---------------------------------------------------------------------------


def test_container_is_one_self_describing_lz4_frame():
    payload = bytes(range(256)) * 300
    data = container.compress(payload)
    assert data[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic number
    assert lz4.frame.decompress(data) == payload  # any frame decoder reads it
    assert container.decompress(data) == payload
    assert container.decompress(lz4.frame.compress(payload, content_checksum=True, store_size=False)) == payload


@pytest.mark.parametrize("bad", [b"", b"not lz4 at all", b"\x04\x22\x4d\x18garbage"])
def test_container_rejects_garbage(bad):
    with pytest.raises(container.ContainerError):
        container.decompress(bad)


def test_container_rejects_truncated_trailing_and_oversized_frames():
    data = container.compress(b"x" * 1000)
    for bad in (data[:-2], data + b"junk"):
        with pytest.raises(container.ContainerError):
            container.decompress(bad)
    with pytest.raises(container.ContainerError, match="more than"):
        container.decompress(container.compress(b"\0" * 2000), max_bytes=1000)


def test_records_encode_stream_data_exactly_as_protobuf():
    item = periodic(0x1F, T0, [1, -2, 3])
    event = data_pb2.Event(event_definition_id=7, app_name="app", timestamp=T0, status_text="x", raw_data=[1.5])
    payload = bursts.burst(
        [
            bursts.json_record('{"identity":"a","state":"open"}'),
            bursts.time_range_record(T0, T0 + 5),
            bursts.item_record("periodic", item),
            bursts.item_record("events", event),
        ]
    )
    expected = stream_pb2.StreamDataBurst(
        data=[
            stream_pb2.StreamData(session_json='{"identity":"a","state":"open"}'),
            stream_pb2.StreamData(time_range=stream_pb2.StreamTimeRange(start_time=T0, end_time=T0 + 5)),
            stream_pb2.StreamData(periodic_data=item),
            stream_pb2.StreamData(event=event),
        ]
    )
    assert payload == expected.SerializeToString()
    recs = bursts.records(payload)
    assert [r.field for r in recs] == [bursts.SESSION_JSON, bursts.TIME_RANGE, bursts.PERIODIC, bursts.EVENT]
    assert recs[2].channels == (0x1F,) and recs[2].value() == item
    assert recs[0].value() == '{"identity":"a","state":"open"}'


def test_scan_canonicalises_unusual_records_and_rejects_malformed_ones():
    # A StreamData carrying an unknown field besides its oneof (another writer's newer schema).
    item = periodic(3, T0, [5])
    odd = stream_pb2.StreamData(periodic_data=item).SerializeToString() + b"\x40\x01"  # field 8 varint
    payload = b"\x0a" + bytes([len(odd)]) + odd
    (rec,) = bursts.records(payload)
    assert rec.field == bursts.PERIODIC and rec.value() == item
    for bad in (b"\x12\x00", b"\x0a\x05ab", b"\x0a"):
        with pytest.raises(bursts.BurstError):
            bursts.scan(bad)


def test_subscriptions_widen_and_match():
    ts = bursts.Record(bursts.TIMESTAMPED, bursts.item_record("timestamped", data_pb2.TimestampedData(channel_id=4)))
    row = bursts.Record(bursts.ROW, bursts.item_record("row", data_pb2.RowData(channel_ids=[8, 9], buffer=b"ab")))
    ev = bursts.Record(bursts.EVENT, bursts.item_record("events", data_pb2.Event(event_definition_id=1)))
    sub = bursts.Subscription()
    assert sub.empty and not any(sub.matches(r) for r in (ts, row, ev))
    sub = sub.widen(stream_pb2.StreamSubscription(data_channel_ids=[9]))
    assert [sub.matches(r) for r in (ts, row, ev)] == [False, True, False]
    sub = sub.widen(stream_pb2.StreamSubscription(all_events=True, data_channel_ids=[4]))
    assert [sub.matches(r) for r in (ts, row, ev)] == [True, True, True] and not sub.full
    assert sub.widen(stream_pb2.StreamSubscription()) == sub  # a request never narrows
    assert sub.widen(stream_pb2.StreamSubscription(all_data_channels=True)).full


# --- the two buffers ---------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "memory"])
def buffer(request, settings):
    settings.RTA_STREAM_SESSION_TTL = 60
    if request.param == "memory":
        settings.RTA_REDIS_URL = ""
        yield MemoryBuffer()
        return
    url = request.getfixturevalue("redis_url")
    settings.RTA_REDIS_URL = url
    buf = RedisBuffer(url)
    yield buf
    buf.close()


def test_sessions_get_ids_positions_and_a_directory_entry(buffer, settings):
    sid, name, position = buffer.open_session("s1")
    assert (name, position) == ("s1", "0-0")
    assert buffer.open_session("s1") == (sid, name, position)  # idempotent
    first = buffer.publish("s1", sid, name, b"burst-1", T0, T0 + 10)
    # A second session on the same stream starts where the stream is.
    sid2, name2, position2 = buffer.open_session("s2", stream_name="s1")
    assert int(sid2) == int(sid) + 1 and (name2, position2) == ("s1", first)
    d = buffer.get_session("s1")
    assert (d.stream_session_id, d.stream_name, d.stream_position, d.time_range) == (sid, "s1", "0-0", (T0, T0 + 10))
    assert abs(d.last_updated - time.time() * 1000) < 60_000


def test_time_range_widens_exactly_at_nanosecond_precision(buffer):
    sid, name, _ = buffer.open_session("s")
    buffer.publish("s", sid, name, b"a", T0 + 1, T0 + 2)
    buffer.publish("s", sid, name, b"b", T0 + 2, T0 + 3)  # doubles would not tell these apart
    buffer.publish("s", sid, name, b"c", T0, T0 + 1)
    buffer.update_session("s", "{}", -5, 7)
    assert buffer.get_session("s").time_range == (-5, T0 + 3)


def test_publish_refuses_a_stale_stream_session(buffer):
    sid, name, _ = buffer.open_session("s")
    assert buffer.publish("s", str(int(sid) + 100), name, b"x") is None
    assert buffer.publish("gone", sid, name, b"x") is None
    assert buffer.publish("s", sid, name, b"x") is not None


def test_a_deleted_session_loses_its_directory_entry_and_publishing_stops(buffer):
    sid, name, _ = buffer.open_session("deleted")
    assert buffer.publish("deleted", sid, name, b"x") is not None
    buffer.delete_session("deleted")
    buffer.delete_session("never-there")
    assert not buffer.has_session("deleted") and buffer.get_session("deleted") is None
    assert buffer.publish("deleted", sid, name, b"y") is None


def test_update_session_creates_entries_only_for_live_sessions(buffer):
    assert buffer.update_session("closed", '{"state":"closed"}', live=False) is False
    assert buffer.get_session("closed") is None and not buffer.has_session("closed")
    assert buffer.update_session("open", '{"state":"open"}', T0, T0, live=True) is True
    assert buffer.update_session("open", '{"state":"open"}', live=True) is False  # unchanged
    assert buffer.update_session("open", '{"state":"closed"}', live=False) is True  # kept up to date once there
    d = buffer.get_session("open")
    assert d.json == '{"state":"closed"}' and d.time_range == (T0, T0)


def test_readers_range_and_follow_the_leading_edge(buffer):
    sid, name, _ = buffer.open_session("s")
    ids = [buffer.publish("s", sid, name, f"e{i}".encode()) for i in range(5)]

    async def scenario():
        assert [e.data for e in await buffer.aread_range(name, ids[0], ids[3])] == [b"e1", b"e2", b"e3"]
        assert [e.data for e in await buffer.aread_range(name, "0-0", None, count=2)] == [b"e0", b"e1"]
        assert await buffer.alast_id(name) == ids[-1]
        assert await buffer.aread_new(name, ids[-1], block_ms=50) == []
        later = threading.Timer(0.2, lambda: buffer.publish("s", sid, name, b"late"))
        later.start()
        found = await buffer.aread_new(name, ids[-1], block_ms=5000)
        later.join()
        assert [(e.data, e.session_id) for e in found] == [(b"late", sid)]

    asyncio.run(scenario())


def test_trimmer_trims_to_length_and_drops_stale_streams(buffer):
    sid, name, _ = buffer.open_session("s")
    for _ in range(30):
        buffer.publish("s", sid, name, b"x")
    sid2, old, _ = buffer.open_session("old")
    buffer.publish("old", sid2, old, b"x")
    time.sleep(0.01)
    report = trim_streams(buffer, max_length=10, max_age_ms=60_000)
    assert (report.trimmed_entries, report.dropped_streams) == (20, [])

    async def count():
        return len(await buffer.aread_range(name, None, None, count=1000))

    assert asyncio.run(count()) == 10
    report = trim_streams(buffer, max_length=10, max_age_ms=0)
    assert sorted(report.dropped_streams) == ["old", "s"]
    assert buffer.stream_names() == []


# --- spec key and field names in Redis ----------------------------------------------------------------


def test_redis_keys_and_fields_are_the_spec_names(redis_url, settings):
    settings.RTA_STREAM_SESSION_TTL = 120
    buf = RedisBuffer(redis_url)
    raw = redis.Redis.from_url(redis_url)
    sid, name, _ = buf.open_session("car/1 ü")
    buf.publish("car/1 ü", sid, name, container.compress(b""), T0, T0 + 1)
    buf.update_session("car/1 ü", '{"state":"open"}', live=True)
    assert raw.get("lastStreamSessionId") == sid.encode()
    assert raw.smembers("streams") == {"car/1 ü".encode()}
    assert raw.type("stream:car/1 ü") == b"stream"
    ((entry_id, fields),) = raw.xrange("stream:car/1 ü")
    assert set(fields) == {b"id", b"data"} and fields[b"id"] == sid.encode()
    entry = raw.hgetall("sessions:car/1 ü")
    assert set(entry) == {k.encode() for k in keys.DIRECTORY_FIELDS}
    assert entry[b"streamPosition"] == b"0-0" and entry[b"tStart"] == str(T0).encode()
    assert 0 < raw.pttl("sessions:car/1 ü") <= 120_000
    buf.close()


# --- writers -------------------------------------------------------------------------------------------------


@pytest.fixture
def live_redis(redis_url, settings):
    settings.RTA_REDIS_URL = redis_url
    return redis.Redis.from_url(redis_url)


def settle():
    """Wait until the session changes queued so far are in the directory."""
    from data_app.live import sessions as live_sessions

    assert live_sessions.publisher().wait(60)


def stream_items(raw, identity):
    out = []
    for _, fields in raw.xrange(f"stream:{identity}"):
        out += decode(fields[b"data"])
    return out


@pytest.mark.django_db(transaction=True)
def test_sink_publishes_open_sessions_only(live_redis):
    create_or_update_session("open-1", create={"state": 2})
    create_or_update_session("closed-1", create={"state": 4})
    # Its first delta (5) moves the first sample: samples at T0 + 5000, + 5000 + 3000, + 5000 + 3000 + 4000.
    timestamped = data_pb2.TimestampedData(
        channel_id=2, start_timestamp=T0, timestamp_deltas_scale=1000, timestamp_deltas=[5, 3, 4], buffer=bytes(24)
    )
    for identity in ("open-1", "closed-1", "no-session"):
        sink = DataSink(identity)
        sink.add("periodic", periodic(1, T0, [1, 2, 3]))
        sink.add("events", data_pb2.Event(event_definition_id=5, timestamp=T0 + 7))
        sink.add("timestamped", timestamped)
        sink.flush()
    assert stream_items(live_redis, "open-1") == [
        ("periodic_data", periodic(1, T0, [1, 2, 3])),
        ("event", data_pb2.Event(event_definition_id=5, timestamp=T0 + 7)),
        ("timestamped_data", timestamped),
    ]
    settle()
    assert not live_redis.exists("stream:closed-1", "stream:no-session", "sessions:closed-1", "sessions:no-session")
    entry = Directory.from_hash(live_redis.hgetall("sessions:open-1"))
    assert entry.time_range == (T0, T0 + 2_000_000)  # the last periodic sample is the latest
    sink = DataSink("open-1")
    sink.add(
        "timestamped",
        data_pb2.TimestampedData(
            channel_id=2,
            start_timestamp=T0 + 3_000_000,
            timestamp_deltas_scale=1000,
            timestamp_deltas=[5, 3, 4],
            buffer=bytes(24),
        ),
    )
    sink.live.flush()  # published live, not stored: the live item alone widens the range
    settle()
    entry = Directory.from_hash(live_redis.hgetall("sessions:open-1"))
    assert entry.time_range == (T0, T0 + 3_000_000 + 12_000)  # a timestamped item's last sample
    sink.discard()
    assert '"state":"open"' in entry.json


@pytest.mark.django_db(transaction=True)
def test_session_updates_reach_the_directory(live_redis):
    create_or_update_session("s", create={"state": 2})
    settle()
    assert '"state":"open"' in live_redis.hget("sessions:s", "json").decode()
    create_or_update_session(
        "s", [("update_details", {"details": {"Driver": "Ann"}}), ("extend_time_range", (T0, T0 + S))]
    )
    settle()
    entry = Directory.from_hash(live_redis.hgetall("sessions:s"))
    assert '"details":{"Driver":"Ann"}' in entry.json and entry.time_range == (T0, T0 + S)
    create_or_update_session("s", [("set_state", 4)])
    settle()
    assert '"state":"closed"' in live_redis.hget("sessions:s", "json").decode()
    # A session that never was live gets no entry.
    create_or_update_session("never", create={"state": 4})
    settle()
    assert not live_redis.exists("sessions:never")


@pytest.mark.django_db(transaction=True)
def test_bursts_of_session_updates_are_coalesced(live_redis, monkeypatch):
    """Hundreds of updates a second to a live session are published a few times, the last one always."""
    from data_app.live import sessions as live_sessions

    published = []
    real = live_sessions.publish_now
    monkeypatch.setattr(live_sessions, "publish_now", lambda ids: (published.append(set(ids)), real(ids)))
    create_or_update_session("busy", create={"state": 2})
    for n in range(200):
        create_or_update_session("busy", [("update_details", {"details": {"n": n}})])
    settle()
    assert len(published) < 50
    assert '"n":199' in live_redis.hget("sessions:busy", "json").decode()


@pytest.mark.django_db(transaction=True)
def test_a_session_deleted_while_its_update_is_published_keeps_no_directory_entry(live_redis, monkeypatch):
    """The publisher reads a session, the session is deleted (its entry removed), then the publisher
    writes the entry: it must not stay, or the session's watchers wait for it to expire (issue 16 #14)."""
    from data_app.live import sessions as live_sessions

    create_or_update_session("racing", create={"state": 2})
    settle()
    assert live_redis.exists("sessions:racing")
    render = live_sessions.render

    def render_then_delete(session):
        text = render(session)
        assert delete_sessions([session.identity]) == 1
        assert not live_redis.exists("sessions:racing")  # the deletion removed the entry
        return text

    monkeypatch.setattr(live_sessions, "render", render_then_delete)
    live_sessions.publish_now(["racing"], close_connection=False)
    assert not live_redis.exists("sessions:racing")


@pytest.mark.django_db(transaction=True)
def test_sink_starts_publishing_when_its_session_opens(live_redis, settings):
    create_or_update_session("late", create={"state": 1})  # waiting counts as live
    create_or_update_session("later", create={"state": 4})
    sink = DataSink("later")
    sink.add("periodic", periodic(1, T0, [1]))
    create_or_update_session("later", [("set_state", 2)])  # the hook tells this process at once
    sink.add("periodic", periodic(1, T0 + S, [2]))
    sink.flush()
    assert [v.start_timestamp for _, v in stream_items(live_redis, "later")] == [T0 + S]


def test_publisher_batches_into_bursts_within_limits(live_redis, settings):
    settings.RTA_STREAM_SESSION_TTL = 60
    publisher = Publisher(batch_bytes=64 * 1024, linger=60_000, idle=60_000)
    item = periodic(2, T0, list(range(128)))
    record = bursts.item_record("periodic", item)
    for i in range(2000):
        publisher.add("batched", record, T0 + i, T0 + i)
    assert publisher.flush("batched")
    entries = live_redis.xrange("stream:batched")
    sizes = [len(lz4.frame.decompress(f[b"data"])) for _, f in entries]
    assert sum(sizes) == 2000 * len(record)
    assert max(sizes) <= 64 * 1024 and len(entries) == -(
        -2000 * len(record) // (64 * 1024 // len(record) * len(record))
    )
    assert Directory.from_hash(live_redis.hgetall("sessions:batched")).time_range == (T0, T0 + 1999)


def wait_for_entries(raw, key, count):
    deadline = time.monotonic() + 60
    while raw.xlen(key) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return raw.xlen(key)


def test_publisher_publishes_once_the_writer_pauses(live_redis, settings):
    publisher = Publisher(linger=60_000, idle=300)
    # The writer adds three items in one go: its thread cannot look in between, however loaded the machine.
    with publisher._cond:
        for i in range(3):
            item = bursts.item_record("periodic", periodic(1, T0 + i * S, [i]))
            publisher.add("spurt", item, T0 + i * S, T0 + i * S)
    assert wait_for_entries(live_redis, "stream:spurt", 1) == 1
    ((_, fields),) = live_redis.xrange("stream:spurt")
    assert [v.start_timestamp for _, v in decode(fields[b"data"])] == [T0, T0 + S, T0 + 2 * S]


def test_publisher_publishes_a_trickle_after_its_linger(live_redis, settings):
    publisher = Publisher(linger=20, idle=60_000)
    publisher.add("alone", bursts.item_record("periodic", periodic(1, T0, [1])), T0, T0)
    assert wait_for_entries(live_redis, "stream:alone", 1) == 1


def test_in_process_buffer_is_the_default(settings):
    settings.RTA_REDIS_URL = ""
    assert isinstance(get_buffer(), MemoryBuffer) and get_buffer() is get_buffer()


def test_trim_streams_command(live_redis, settings, capsys):
    buf = get_buffer()
    sid, name, _ = buf.open_session("cmd")
    for _ in range(12):
        buf.publish("cmd", sid, name, b"x")
    call_command("trim_streams", "--once", "--length", "5")
    assert live_redis.xlen("stream:cmd") == 5
    assert "7 entries trimmed" in capsys.readouterr().out


# --- outgoing batching ---------------------------------------------------------------------------------------


def test_batcher_sends_full_bursts_at_once_and_small_ones_without_flooding():
    from data_app.live.batching import Batcher

    async def scenario():
        sent = []
        # The delay is long next to a turn of the loop, even on a loaded machine.
        batcher = Batcher(lambda data: sent.append(lz4.frame.decompress(data)), target_bytes=100, delay=1.0)
        batcher.add(b"a" * 30)
        batcher.add(b"b" * 30)  # same turn of the loop: rides along
        assert sent == []
        await asyncio.sleep(0)
        assert sent == [b"a" * 30 + b"b" * 30]
        batcher.add(b"c" * 30)  # right after a burst: waits for the delay ...
        await asyncio.sleep(0)
        assert len(sent) == 1
        batcher.add(b"d" * 80)  # ... unless the target size is reached
        assert sent[1:] == [b"c" * 30]  # what was gathered goes first, never past the target
        batcher.add(b"e" * 30)  # would pass the target: "d" goes alone, "e" after the delay
        assert sent[2:] == [b"d" * 80]
        deadline = time.monotonic() + 60
        while len(sent) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert sent[3:] == [b"e" * 30]

    asyncio.run(scenario())
