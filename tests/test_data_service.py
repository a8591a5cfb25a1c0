"""Data Service round trips: write via gRPC (in-process server), read via REST and DataReader."""

import struct

import grpc
import pytest
from google.protobuf import wrappers_pb2
from rta.model import data_pb2
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.models import Chunk
from rta_kit import wire
from sessions_app.models import Session
from sessions_app.services.updates import create_or_update_session

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a multiple of every span class
WRITE = "/rta.toolkit.api.chunk_service.DataWriter/WriteDataStream"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def grpc_channel(settings):
    from rta_site.grpc_server import build_server

    settings.RTA_GRPC_SERVICES = ["data_app.grpc.register"]
    server, port = build_server(port=0, bind="127.0.0.1", max_workers=4)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(None).wait()


def write(channel, messages):
    """Send WriteDataStream messages; return the flush_completed markers received."""
    responses = pb_grpc.DataWriterStub(channel).WriteDataStream(iter(messages), timeout=20)
    return [r.flush_completed for r in responses]


def periodic(ch, start, values, interval=10_000_000):
    return pb.WriteDataStreamMessage(
        periodic_data=data_pb2.PeriodicData(
            channel_id=ch,
            start_timestamp=start,
            interval=interval,
            samples=len(values),
            buffer=struct.pack(f"<{len(values)}h", *values),
        )
    )


def timestamped(ch, start, deltas, values, scale=1000):
    return pb.WriteDataStreamMessage(
        timestamped_data=data_pb2.TimestampedData(
            channel_id=ch,
            start_timestamp=start,
            timestamp_deltas_scale=scale,
            timestamp_deltas=deltas,
            buffer=struct.pack(f"<{len(values)}d", *values),
        )
    )


def event(t, n):
    return pb.WriteDataStreamMessage(
        event=data_pb2.Event(event_definition_id=n, app_name="app", timestamp=t, status_text=f"e{n}", raw_data=[n, 2.5])
    )


def ident(name):
    return pb.WriteDataStreamMessage(data_identity=name)


def periodic_samples(lists):
    """(time, value) pairs from PeriodicDataList messages."""
    out = []
    for lst in lists:
        for item in lst.periodic_data:
            vals = struct.unpack(f"<{item.samples}h", item.buffer)
            out += [(item.channel_id, item.start_timestamp + i * item.interval, v) for i, v in enumerate(vals)]
    return out


def rest_chunks(api, identity, kind, channels=None, **params):
    url = f"/rta/v2/sessions/{identity}/data/{kind}" + (f"/{channels}" if channels else "")
    response = api.get(url, params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == wire.MEDIA_TYPE
    return wire.read_chunks(b"".join(response.streaming_content))


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_periodic_int16_round_trip(grpc_channel, api):
    create_or_update_session("s1")
    values = list(range(-1500, 1500))  # 3000 samples at 100 Hz = 30 s
    markers = write(
        grpc_channel,
        [
            ident("s1"),
            periodic(0x10, T0 + 5 * S, values),
            periodic(0x11, T0, [7, 8, 9]),
            pb.WriteDataStreamMessage(flush_marker="m1"),
        ],
    )
    assert markers == ["m1"]
    # Stored items hold at most 128 samples and every chunk sits in one aligned window.
    for row in Chunk.objects.filter(identity="s1"):
        assert row.window_start % row.span == 0
        assert row.window_start <= row.start_time <= row.end_time < row.window_start + row.span
        assert S <= row.span <= 100 * S
    chunks = rest_chunks(api, "s1", "periodic", "10-11")
    decoded = [c.decode("periodic") for c in chunks]
    assert all(i.samples <= 128 for lst in decoded for i in lst.periodic_data)
    got = periodic_samples(decoded)
    expected = [(0x10, T0 + 5 * S + i * 10_000_000, v) for i, v in enumerate(values)]
    expected += [(0x11, T0 + i * 10_000_000, v) for i, v in enumerate([7, 8, 9])]
    assert sorted(got) == sorted(expected)
    # Time order within a channel; header times reflect the data.
    ch10 = [c for c in chunks if c.channel_ids == [0x10]]
    assert [c.start for c in ch10] == sorted(c.start for c in ch10)
    assert ch10[0].start == T0 + 5 * S and ch10[-1].end == T0 + 5 * S + 2999 * 10_000_000
    # DataReader gives the same lists.
    reader = pb_grpc.DataReaderStub(grpc_channel)
    lists = list(reader.ReadPeriodicDataStream(pb.ReadChannelDataStreamRequest(data_identity="s1", channels="10")))
    assert periodic_samples(lists) == [s for s in expected if s[0] == 0x10]
    # The session's time range was widened to the data.
    session = Session.objects.get(identity="s1")
    assert (session.start_time, session.end_time) == (T0, T0 + 5 * S + 2999 * 10_000_000)


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_stable_chunks_across_request_bounds(grpc_channel, api):
    create_or_update_session("s2")
    write(grpc_channel, [ident("s2"), periodic(1, T0, list(range(350)), interval=S)])  # slow: 100 s span
    whole = rest_chunks(api, "s2", "periodic", "1")
    assert [(c.start - T0) // S for c in whole] == [0, 100, 200, 300]
    middle = whole[len(whole) // 2]
    part = rest_chunks(api, "s2", "periodic", "1", start=middle.start + 1, end=middle.start + 2)
    assert len(part) == 1
    assert (part[0].start, part[0].end, part[0].packed) == (middle.start, middle.end, middle.packed)
    assert rest_chunks(api, "s2", "periodic", "1", start=whole[-1].end + 1) == []
    assert rest_chunks(api, "s2", "periodic", "2-") == []


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_timestamped_f64_and_events_round_trip(grpc_channel, api):
    create_or_update_session("s3")
    deltas = [0, 5, 5, 1000, 3]  # ×1000 ns
    vals = [1.5, -2.25, 3e300, 0.0, float("inf")]
    write(
        grpc_channel,
        [
            ident("s3"),
            timestamped(0xABC, T0 + 123, deltas, vals),
            event(T0 + 7, 1),
            event(T0 + 3, 2),
            pb.WriteDataStreamMessage(flush_marker="a"),
            timestamped(0xABC, T0 + 9 * S, [0, 1], [9.0, 10.0]),
        ],
    )
    chunks = rest_chunks(api, "s3", "timestamped", "ABC")
    items = [i for c in chunks for i in c.decode("timestamped").timestamped_data]
    samples = []
    for i in items:
        t = i.start_timestamp
        for d, v in zip(i.timestamp_deltas, struct.unpack(f"<{len(i.timestamp_deltas)}d", i.buffer)):
            t += d * (i.timestamp_deltas_scale or 1)
            samples.append((t, v))
    assert samples == [
        (T0 + 123, 1.5),
        (T0 + 5123, -2.25),
        (T0 + 10123, 3e300),
        (T0 + 1_010_123, 0.0),
        (T0 + 1_013_123, float("inf")),
        (T0 + 9 * S, 9.0),
        (T0 + 9 * S + 1000, 10.0),
    ]
    reader = pb_grpc.DataReaderStub(grpc_channel)
    ev_lists = list(
        reader.ReadEventsStream(
            pb.ReadDataStreamRequest(
                data_identity="s3",
                start_time=wrappers_pb2.Int64Value(value=T0),
                end_time=wrappers_pb2.Int64Value(value=T0 + 5),
            )
        )
    )
    events = [e for lst in ev_lists for e in lst.events]
    assert [(e.timestamp, e.event_definition_id, e.status_text, list(e.raw_data)) for e in events] == [
        (T0 + 3, 2, "e2", [2.0, 2.5]),
        (T0 + 7, 1, "e1", [1.0, 2.5]),
    ]
    ev_chunks = rest_chunks(api, "s3", "events")
    assert [e.timestamp for c in ev_chunks for e in c.decode("events").events] == [T0 + 3, T0 + 7]


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_late_data_merges_into_existing_chunk(grpc_channel, api):
    create_or_update_session("s4")
    write(grpc_channel, [ident("s4"), periodic(2, T0 + S, [1, 2, 3], interval=S)])
    before = list(Chunk.objects.filter(identity="s4").values_list("window_start", "span"))
    write(grpc_channel, [ident("s4"), periodic(2, T0, [0], interval=S)])  # back-filled, same window
    after = list(Chunk.objects.filter(identity="s4").values_list("window_start", "span"))
    assert before == after and len(after) == 1
    got = periodic_samples(c.decode("periodic") for c in rest_chunks(api, "s4", "periodic", "2"))
    assert got == [(2, T0, 0), (2, T0 + S, 1), (2, T0 + 2 * S, 2), (2, T0 + 3 * S, 3)]


def _status(fn):
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_write_errors(grpc_channel, api):
    create_or_update_session("s5")
    assert _status(lambda: write(grpc_channel, [periodic(1, T0, [1])])) == grpc.StatusCode.INVALID_ARGUMENT
    bad = pb.WriteDataStreamMessage(
        periodic_data=data_pb2.PeriodicData(channel_id=1, start_timestamp=T0, interval=1, samples=2, buffer=b"\0\0\0")
    )
    msgs = [
        ident("s5"),
        periodic(1, T0, [5, 6]),
        pb.WriteDataStreamMessage(flush_marker="ok"),
        periodic(1, T0 + 50 * S, [7]),
        bad,
    ]
    assert _status(lambda: write(grpc_channel, msgs)) == grpc.StatusCode.INVALID_ARGUMENT
    bad_ts = pb.WriteDataStreamMessage(
        timestamped_data=data_pb2.TimestampedData(
            channel_id=1, start_timestamp=T0, timestamp_deltas=[0, 1, 2], buffer=b"\0" * 8
        )
    )
    assert _status(lambda: write(grpc_channel, [ident("s5"), bad_ts])) == grpc.StatusCode.INVALID_ARGUMENT
    # Truncated protobuf bytes on the stream.
    raw = grpc_channel.stream_stream(WRITE, request_serializer=None, response_deserializer=None)
    good = ident("s5").SerializeToString()
    truncated = periodic(1, T0 + 60 * S, [1, 2, 3]).SerializeToString()[:-3]
    assert _status(lambda: list(raw(iter([good, truncated]), timeout=20))) == grpc.StatusCode.INVALID_ARGUMENT
    # Only the flushed data survived.
    got = periodic_samples(c.decode("periodic") for c in rest_chunks(api, "s5", "periodic", "1"))
    assert got == [(1, T0, 5), (1, T0 + 10_000_000, 6)]


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_rest_errors(api):
    create_or_update_session("s6")
    assert api.get("/rta/v2/sessions/nope/data/periodic/1").status_code == 404
    assert api.get("/rta/v2/sessions/nope/data/events").json()["error"]
    for url in (
        "/rta/v2/sessions/s6/data/periodic/1,,2",
        "/rta/v2/sessions/s6/data/periodic/zz",
        "/rta/v2/sessions/s6/data/timestamped/1?start=5&end=4",
        "/rta/v2/sessions/s6/data/events?start=x",
    ):
        response = api.get(url)
        assert response.status_code == 400, url
        assert "error" in response.json()
    assert api.get("/rta/v2/sessions/s6/data/row/1").status_code == 200


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_reader_errors(grpc_channel):
    reader = pb_grpc.DataReaderStub(grpc_channel)
    bad = pb.ReadChannelDataStreamRequest(data_identity="x", channels="1,,2")
    assert _status(lambda: list(reader.ReadPeriodicDataStream(bad))) == grpc.StatusCode.INVALID_ARGUMENT
    reversed_ = pb.ReadChannelDataStreamRequest(
        data_identity="x",
        channels="1",
        start_time=wrappers_pb2.Int64Value(value=5),
        end_time=wrappers_pb2.Int64Value(value=4),
    )
    assert _status(lambda: list(reader.ReadTimestampedDataStream(reversed_))) == grpc.StatusCode.INVALID_ARGUMENT
    assert list(reader.ReadRowDataStream(pb.ReadChannelDataStreamRequest(data_identity="x", channels="1"))) == []


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_head_answers_like_get_without_a_body(grpc_channel, api):
    create_or_update_session("h1")
    write(grpc_channel, [ident("h1"), periodic(1, T0, [1, 2, 3]), event(T0, 1)])
    for url in (
        "/rta/v2/sessions/h1/data/periodic/1",
        "/rta/v2/sessions/h1/data/events",
        "/rta/v2/sessions/h1/data/row/5-",
        "/rta/v2/sessions/h1/data/timestamped/1?start=1&end=2",
    ):
        get, head = api.get(url), api.head(url)
        assert (head.status_code, get.status_code) == (200, 200), url
        assert head["Content-Type"] == get["Content-Type"] == wire.MEDIA_TYPE
        assert head["Cache-Control"] == get["Cache-Control"] == "no-store"
        body = b"".join(get.streaming_content)
        # Chunks served as stored have a known length: both carry it.
        assert head["Content-Length"] == get["Content-Length"] == str(len(body)), url
        assert b"".join(head.streaming_content) == b""
    assert b"".join(api.get("/rta/v2/sessions/h1/data/periodic/1").streaming_content) != b""


def test_under_asgi_data_is_sent_block_by_block(grpc_channel):
    """Django collects a synchronous streaming body into one list under ASGI; ours is asynchronous."""
    import asyncio

    from django.db import connection
    from django.test import AsyncClient

    from data_app.store import reader
    from tests.grpc_helpers import _close_server_connections

    create_or_update_session("a1")
    write(grpc_channel, [ident("a1")] + [periodic(1, T0 + k * 10**10, list(range(k, k + 1000))) for k in range(40)])
    expected = b"".join(reader.open_identity("a1", "periodic"))

    async def fetch():
        response = await AsyncClient().get("/rta/v2/sessions/a1/data/periodic/1")
        return response, [block async for block in response.streaming_content]

    try:
        response, blocks = asyncio.run(fetch())
    finally:
        # The view ran in a thread of its own, whose pooled connection the test client never
        # returns: end it, then start a fresh pool.
        _close_server_connections(set())
        connection.close()
        connection.close_pool()
    assert response.status_code == 200 and response.is_async
    assert b"".join(blocks) == expected
    assert int(response["Content-Length"]) == len(expected)


@pytest.mark.usefixtures("store_kind")  # file and object store
def test_data_errors_are_json_for_get_and_head(api):
    create_or_update_session("h2")
    cases = [
        ("/rta/v2/sessions/nope/data/periodic/1", 404),
        ("/rta/v2/sessions/nope/data/events", 404),
        ("/rta/v2/sessions/h2/data/periodic/1,,2", 400),
        ("/rta/v2/sessions/h2/data/timestamped/G", 400),
        ("/rta/v2/sessions/h2/data/row/5-3", 400),
        ("/rta/v2/sessions/h2/data/periodic/1?start=10&end=9", 400),
        ("/rta/v2/sessions/h2/data/events?start=1.5", 400),
        ("/rta/v2/sessions/h2/data/events?end=abc", 400),
    ]
    for url, status in cases:
        response = api.get(url)
        assert response.status_code == status, url
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"], url
        head = api.head(url)
        assert head.status_code == status, url
        assert head["Content-Type"] == "application/json" and head.content == b""
        assert head["Content-Length"] == str(len(response.content))
    for method in (api.post, api.put, api.delete):
        response = method("/rta/v2/sessions/h2/data/events")
        assert response.status_code == 405
        assert response.json()["error"] and "GET" in response["Allow"]
