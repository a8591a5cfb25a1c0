"""Hostile and careless gRPC clients (issue 16 #3, #5, #6, #8), through a real in-process server.

- #3 times the chunk windows cannot hold are refused up front; the extremes they can are stored and read;
- #5 bytes that are no request answer INVALID_ARGUMENT on every method, and log no ERROR;
- #6 messages quote client input briefly, so the status reaches the client;
- #8 idle write streams cannot starve reads or other writers: write streams have threads of their own,
  one address may hold only so many streams, and a stream left silent is ended.
"""

import logging
import random
import struct
import threading

import grpc
import pytest
from django.test import override_settings
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection
from rta.model import data_pb2
from rta.toolkit.api import chunk_service_pb2 as chunks_pb
from rta.toolkit.api import chunk_service_pb2_grpc as chunks_grpc
from rta.toolkit.api import config_service_pb2 as configs_pb
from rta.toolkit.api import config_service_pb2_grpc as configs_grpc
from rta.toolkit.api import session_service_pb2 as sessions_pb
from rta.toolkit.api import session_service_pb2_grpc as sessions_grpc

from data_app.models import Chunk
from rta_core.errors import InvalidArgument
from rta_kit import wire
from rta_kit.samples import TIME_MIN
from sessions_app.services.updates import create_or_update_session
from tests.grpc_helpers import grpc_channel, grpc_server, running_server  # noqa: F401  (fixtures)

S = 1_000_000_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Message = chunks_pb.WriteDataStreamMessage
db = pytest.mark.django_db(transaction=True)


def status_of(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def segment_files(settings):
    root = settings.RTA_DATA_PATH / "chunks"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def periodic(start, samples=1, interval=S, channel=1):
    return Message(
        periodic_data=data_pb2.PeriodicData(
            channel_id=channel,
            start_timestamp=start,
            interval=interval,
            samples=samples,
            buffer=struct.pack(f"<{samples}h", *range(samples)),
        )
    )


def timestamped(start, deltas, scale=1, channel=2):
    return Message(
        timestamped_data=data_pb2.TimestampedData(
            channel_id=channel,
            start_timestamp=start,
            timestamp_deltas_scale=scale,
            timestamp_deltas=deltas,
            buffer=struct.pack(f"<{len(deltas)}d", *range(len(deltas))),
        )
    )


def event(t, n=7):
    return Message(event=data_pb2.Event(event_definition_id=n, app_name="app", timestamp=t, status_text="e"))


def row(t):
    return Message(row_data=data_pb2.RowData(timestamp=t, channel_ids=[3, 4], buffer=b"\x01\x02"))


def write(channel, identity, *items, timeout=10):
    """Write ``items`` to ``identity`` and flush; the flush markers received."""
    messages = [Message(data_identity=identity), *items, Message(flush_marker="done")]
    return [
        r.flush_completed for r in chunks_grpc.DataWriterStub(channel).WriteDataStream(iter(messages), timeout=timeout)
    ]


# --- #3 times near the ends of int64 -----------------------------------------------------------

UNSTORABLE = {
    "periodic_start_min": periodic(INT64_MIN),
    "periodic_start_min_3_samples": periodic(INT64_MIN, samples=3),
    "periodic_start_min_plus_1s": periodic(INT64_MIN + S),
    "periodic_start_just_before_the_first_window": periodic(TIME_MIN - 1),
    "periodic_end_past_max": periodic(INT64_MAX - S, samples=3),
    "timestamped_start_min": timestamped(INT64_MIN, [0, 1, 1]),
    "timestamped_first_delta_min": timestamped(INT64_MIN, [5, 1]),
    "timestamped_deltas_end_past_max": timestamped(INT64_MAX - 10, [0, 5, 100]),
    "event_min": event(INT64_MIN),
    "event_min_plus_1": event(INT64_MIN + 1),
    "row_min": row(INT64_MIN),
}


@db
@pytest.mark.parametrize("case", list(UNSTORABLE))
def test_times_the_chunk_windows_cannot_hold_are_refused_up_front(grpc_channel, settings, case):  # noqa: F811
    code, details = status_of(lambda: write(grpc_channel, "far", periodic(1_700_000_000 * S), UNSTORABLE[case]))
    assert (code, "overflows the storable range" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True), details
    assert details.startswith("message 2:")
    assert not Chunk.objects.exists()  # the stream's earlier items went with it
    assert segment_files(settings) == []


@db
def test_the_extreme_storable_times_are_stored_and_read(grpc_channel, api):  # noqa: F811
    create_or_update_session("edge")
    items = [
        periodic(TIME_MIN, samples=3),
        periodic(INT64_MAX, channel=3),
        timestamped(TIME_MIN, [0, 1, 1]),
        timestamped(INT64_MAX - 2, [0, 1, 1], channel=4),
        event(TIME_MIN),
        event(INT64_MAX, n=8),
        row(TIME_MIN),
        row(INT64_MAX),
    ]
    assert write(grpc_channel, "edge", *items) == ["done"]
    reader = chunks_grpc.DataReaderStub(grpc_channel)

    def read(method, request_type=chunks_pb.ReadChannelDataStreamRequest, **fields):
        return list(getattr(reader, method)(request_type(data_identity="edge", **fields), timeout=10))

    periodic_items = [i for lst in read("ReadPeriodicDataStream", channels="0-") for i in lst.periodic_data]
    assert [(i.channel_id, i.start_timestamp, i.samples) for i in periodic_items] == [
        (1, TIME_MIN, 3),
        (3, INT64_MAX, 1),
    ]
    timestamped_items = [i for lst in read("ReadTimestampedDataStream", channels="0-") for i in lst.timestamped_data]
    assert sorted((i.channel_id, i.start_timestamp) for i in timestamped_items) == [(2, TIME_MIN), (4, INT64_MAX - 2)]
    events = [e.timestamp for lst in read("ReadEventsStream", chunks_pb.ReadDataStreamRequest) for e in lst.events]
    assert events == [TIME_MIN, INT64_MAX]
    rows = [r.timestamp for lst in read("ReadRowDataStream", channels="0-") for r in lst.row_data]
    assert rows == [TIME_MIN, INT64_MAX]
    bounded = read("ReadEventsStream", chunks_pb.ReadDataStreamRequest, start_time={"value": INT64_MAX})
    assert [e.timestamp for lst in bounded for e in lst.events] == [INT64_MAX]
    # The same through REST, whose headers carry each chunk's first and last time.
    response = api.get("/rta/v2/sessions/edge/data/events")
    assert response.status_code == 200
    chunks = wire.read_chunks(b"".join(response.streaming_content))
    assert [(c.start, c.end) for c in chunks] == [(TIME_MIN, TIME_MIN), (INT64_MAX, INT64_MAX)]


# --- #5 bytes that are no request ---------------------------------------------------------------

GARBAGE = {
    "truncated_varint": b"\x08\x80",
    "wire_type_7": b"\x0f\x01",
    "truncated_tag": b"\x80",
    "length_past_the_end": b"\x0a\x7fabc",
    "random": bytes(random.Random(16).randrange(256) for _ in range(64)),
}


def _every_method(server):
    pool = descriptor_pool.Default()
    for name in [*server.service_names, reflection.SERVICE_NAME]:
        for method in pool.FindServiceByName(name).methods:
            yield f"/{name}/{method.name}", method


def _send_raw(channel, path, method, payload):
    kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
    call = getattr(channel, kind)(path)  # no serializers: the bytes go as they are
    result = call(iter([payload]) if method.client_streaming else payload, timeout=10)
    if method.server_streaming:
        list(result)


@db
@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_bytes_that_are_no_request_are_invalid_argument_on_every_method(grpc_server, grpc_channel, caplog, garbage):  # noqa: F811
    server, _ = grpc_server
    caplog.set_level(logging.INFO)
    answered = {}
    for path, method in _every_method(server):
        code, details = status_of(lambda: _send_raw(grpc_channel, path, method, GARBAGE[garbage]))  # noqa: B023
        answered[path] = code
        assert len(details) < 200, details
    assert len(answered) > 20  # every service's methods were tried
    assert answered == dict.fromkeys(answered, grpc.StatusCode.INVALID_ARGUMENT)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR or "deserializ" in r.getMessage()]
    assert logged == []


@db
def test_a_garbage_message_later_in_a_request_stream_is_invalid_argument(grpc_channel):  # noqa: F811
    info = configs_pb.ConfigStreamMessage(
        info=configs_pb.ConfigStreamMessage.ConfigInfo(identifier="c", content_type="application/vnd.mat.config+ffc")
    ).SerializeToString()
    upload = grpc_channel.stream_unary("/rta.toolkit.api.config_service.ConfigStore/PutConfigStream")
    code, details = status_of(lambda: upload(iter([info, GARBAGE["wire_type_7"]]), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (
        "request message 1 is not a valid rta.toolkit.api.config_service.ConfigStreamMessage (the bytes do not parse)"
    )
    assert not configs_grpc.ConfigStoreStub(grpc_channel).HasConfig(configs_pb.HasConfigRequest(identifier="c")).value


# --- #6 messages quoting client input -----------------------------------------------------------


@db
def test_messages_quote_long_input_briefly(grpc_channel):  # noqa: F811
    reader = chunks_grpc.DataReaderStub(grpc_channel)
    sessions = sessions_grpc.SessionStoreStub(grpc_channel)
    configs = configs_grpc.ConfigStoreStub(grpc_channel)
    long = "x" * 100_000
    calls = {
        "channels": (
            lambda: list(
                reader.ReadTimestampedDataStream(
                    chunks_pb.ReadChannelDataStreamRequest(data_identity="d", channels=long), timeout=10
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "channel_range": (
            lambda: list(
                reader.ReadPeriodicDataStream(
                    chunks_pb.ReadChannelDataStreamRequest(data_identity="d", channels="1-" + long), timeout=10
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "get_session": (
            lambda: sessions.GetSession(sessions_pb.GetSessionRequest(identity="x" * 20_000), timeout=10),
            grpc.StatusCode.NOT_FOUND,
        ),
        "query_property": (
            lambda: sessions.ListSessions(sessions_pb.ListSessionsRequest(query='{"%s": 1}' % long), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "query_operator": (
            lambda: sessions.ListSessions(
                sessions_pb.ListSessionsRequest(query='{"details.%s": {"$%s": 1}}' % (long, long)), timeout=10
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "update_op_value": (
            lambda: sessions.CreateOrUpdateSession(
                sessions_pb.CreateOrUpdateSessionRequest(
                    identity="s1",
                    updates=[sessions_pb.SessionUpdate(set_state=123456)],
                    create_if_not_exists=sessions_pb.CreateOrUpdateSessionRequest.CreateIfNotExists(timestamp=long),
                ),
                timeout=10,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "content_type": (
            lambda: configs.PutConfig(
                configs_pb.PutConfigRequest(identifier="c", content_type=long, data=b"x"), timeout=10
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "config_identifier": (
            lambda: configs.GetConfig(configs_pb.GetConfigRequest(identifier="y" * 4000), timeout=10),
            grpc.StatusCode.NOT_FOUND,
        ),
    }
    answered = {name: status_of(call) for name, (call, _) in calls.items()}
    assert {name: code for name, (code, _) in answered.items()} == {name: code for name, (_, code) in calls.items()}
    assert {name: len(details) < 300 for name, (_, details) in answered.items()} == dict.fromkeys(calls, True), answered


def register_chatty(server):
    """A test service whose one method refuses with a 100,000-character message."""

    def refuse(request, context):
        raise InvalidArgument("y" * 100_000)

    handler = grpc.unary_unary_rpc_method_handler(refuse)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Chatty", {"Refuse": handler})])
    return []


@pytest.mark.django_db(transaction=True)
def test_any_message_is_cut_before_it_reaches_the_client(django_db_blocker):
    with running_server(django_db_blocker, services=["tests.test_grpc_hardening.register_chatty"]) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            code, details = status_of(lambda: channel.unary_unary("/test.Chatty/Refuse")(b"", timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("yyy") and details.endswith("…") and len(details) <= 1000


@pytest.mark.django_db
def test_rest_messages_quote_long_input_briefly(api):
    create_or_update_session("s1")
    long = "x" * 5000
    for url, status in [
        (f"/rta/v2/sessions/s1/data/timestamped/{long}", 400),
        (f"/rta/v2/sessions/{long}/data/events", 404),
        (f"/rta/v2/sessions/{long}", 404),
        (f"/rta/v2/configs/{long}", 400),
    ]:
        response = api.get(url)
        assert (url[:40], response.status_code) == (url[:40], status)
        assert len(response.json()["error"]) < 300, response.json()
    for params in ({"query": '{"%s": 1}' % long}, {"pageSize": long}):
        response = api.get("/rta/v2/sessions", params)
        assert response.status_code == 400 and len(response.json()["error"]) < 300, response.json()


# --- #8 idle write streams ----------------------------------------------------------------------


class IdleWriter:
    """A write stream that names its identity, flushes once (so the server is known to hold it), then idles."""

    def __init__(self, channel, identity, timeout=60):
        self.release = threading.Event()
        self.responses = chunks_grpc.DataWriterStub(channel).WriteDataStream(self._messages(identity), timeout=timeout)

    def _messages(self, identity):
        yield Message(data_identity=identity)
        yield Message(flush_marker="held")
        self.release.wait(120)

    def held(self):
        """Wait for the server's answer to the flush: its handler is running and now waits for the client."""
        return next(self.responses).flush_completed == "held"

    def close(self):
        self.release.set()
        try:
            list(self.responses)
        except grpc.RpcError:
            pass


@pytest.fixture
def idle_writers():
    opened = []
    yield opened
    for writer in opened:
        writer.close()


@db
def test_idle_write_streams_starve_neither_reads_nor_writers(grpc_channel, idle_writers):  # noqa: F811
    for n in range(70):  # one address, one connection: more than RTA_GRPC_WORKERS threads of the test server
        idle_writers.append(IdleWriter(grpc_channel, f"idle-{n}"))
    assert all(writer.held() for writer in idle_writers)
    # Both must complete within their 5 s deadlines while every idle stream is still open.
    reader = chunks_grpc.DataReaderStub(grpc_channel)
    assert list(reader.ReadEventsStream(chunks_pb.ReadDataStreamRequest(data_identity="busy"), timeout=5)) == []
    assert write(grpc_channel, "busy", event(1_700_000_000 * S), timeout=5) == ["done"]
    assert all(not writer.responses.done() for writer in idle_writers)


@db
def test_one_address_may_hold_only_so_many_streams(django_db_blocker, idle_writers):
    with override_settings(RTA_GRPC_MAX_STREAMS_PER_PEER=3):
        with running_server(django_db_blocker) as (_, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for n in range(3):
                idle_writers.append(IdleWriter(channel, f"idle-{n}"))
            assert all(writer.held() for writer in idle_writers)
            code, details = status_of(lambda: write(channel, "one-more", event(S)))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "3 streaming calls open" in details
            reader = chunks_grpc.DataReaderStub(channel)
            request = chunks_pb.ReadDataStreamRequest(data_identity="one-more")
            code, _ = status_of(lambda: list(reader.ReadEventsStream(request, timeout=10)))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Unary calls are not streams: they still go through.
            assert (
                not configs_grpc.ConfigStoreStub(channel).HasConfig(configs_pb.HasConfigRequest(identifier="c")).value
            )
            idle_writers.pop().close()  # one ends: another may start
            assert write(channel, "one-more", event(S)) == ["done"]


@db
def test_a_silent_write_stream_is_ended(django_db_blocker, idle_writers, caplog):
    caplog.set_level(logging.INFO)
    with override_settings(RTA_GRPC_STREAM_IDLE_SECONDS=1):
        with running_server(django_db_blocker) as (_, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            writer = IdleWriter(channel, "silent", timeout=60)
            idle_writers.append(writer)
            assert writer.held()
            code, details = status_of(lambda: list(writer.responses))  # the server ends it, long before 60 s
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert details == "no request for 1 s: an idle stream is ended (RTA_GRPC_STREAM_IDLE_SECONDS)"
            # A writer that keeps talking is not idle, however long its stream.
            assert write(channel, "talking", *[event(i * S) for i in range(50)]) == ["done"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
