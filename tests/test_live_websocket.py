"""The WebSocket live stream (spec §10) end to end: real servers on loopback, the `websockets` client.

Three `manage.py serve` processes run for the module against the test
database: A (gRPC + HTTP on Redis), B (HTTP only on the same Redis, with a
small slow-client limit and directory polling slowed down so that changes
must reach it through the channel layer) and M (gRPC + HTTP without Redis:
in-process buffer and channel layer). Sessions and data are written through gRPC, as ingest
does; a third-party ingest is played with raw Redis commands.
"""

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import lz4.frame
import pytest
import redis
import websockets
from django.db import connection
from rta.model import data_pb2
from rta.model.net import stream_pb2
from rta.toolkit.api import chunk_service_pb2 as cpb
from rta.toolkit.api import chunk_service_pb2_grpc as cgrpc
from rta.toolkit.api import session_service_pb2 as spb
from rta.toolkit.api import session_service_pb2_grpc as sgrpc
from websockets.sync.client import connect

from tests.conftest import IN_CI, flush_redis, free_port, reachable_redis_url, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
SUBPROTOCOL = "mat.ocs.rta.stream-lz4"
MS = 1_000_000
T0 = 1_800_000_000 * 1_000_000_000
WAIT = 20  # seconds a test waits for something before failing

pytestmark = pytest.mark.django_db(transaction=True)


# --- servers ------------------------------------------------------------------------------------------


class Server:
    def __init__(self, name, env, grpc_enabled, tmp):
        self.name, self.http, self.grpc = name, free_port(), free_port() if grpc_enabled else None
        args = [sys.executable, "manage.py", "serve", "--bind", "127.0.0.1", "--http-port", str(self.http)]
        args += ["--grpc-port", str(self.grpc)] if grpc_enabled else ["--no-grpc"]
        self.log = tmp / f"{name}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.channel = None

    def wait_ready(self):
        wait_until_serving(self.process, f"http://127.0.0.1:{self.http}/health", self.log)
        if self.grpc:
            self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc}")
            grpc.channel_ready_future(self.channel).result(timeout=30)

    def stop(self):
        if self.channel is not None:
            self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def url(self, identity):
        return f"ws://127.0.0.1:{self.http}/rta/v2/sessions/{identity}/stream"


@pytest.fixture(scope="module")
def live_redis_url():
    url = reachable_redis_url()
    yield url
    flush_redis(url)


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker, live_redis_url, tmp_path_factory):
    if connection.vendor != "postgresql":
        if IN_CI:
            pytest.fail("the live stream tests need PostgreSQL (set RTA_DATABASE_URL)")
        pytest.skip("needs PostgreSQL: servers in other processes share the test database")
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    tmp = tmp_path_factory.mktemp("live")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    base.update(RTA_DATABASE_URL=database_url, RTA_DATA_PATH=str(tmp / "data"), RTA_LOG_LEVEL="WARNING")
    started = {
        "A": Server("A", {**base, "RTA_REDIS_URL": live_redis_url}, True, tmp),
        # B polls directory entries only every 30 s: JSON updates made on A reach it through the channel layer.
        "B": Server(
            "B",
            {
                **base,
                "RTA_REDIS_URL": live_redis_url,
                "RTA_STREAM_TIME_RANGE_INTERVAL": "30",
                "RTA_STREAM_CLIENT_MAX_BUFFER_BYTES": str(512 * 1024),
            },
            False,
            tmp,
        ),
        "M": Server("M", base, True, tmp),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def A(servers):
    return servers["A"]


@pytest.fixture
def B(servers):
    return servers["B"]


@pytest.fixture
def M(servers):
    return servers["M"]


# --- helpers ------------------------------------------------------------------------------------------


def new_identity():
    return f"live-{uuid.uuid4()}"


def create_session(server, identity, state=2, **updates):
    ops = [spb.SessionUpdate(**{k: v}) for k, v in updates.items()]
    request = spb.CreateOrUpdateSessionRequest(
        identity=identity,
        create_if_not_exists=spb.CreateOrUpdateSessionRequest.CreateIfNotExists(state=state),
        updates=ops,
    )
    sgrpc.SessionStoreStub(server.channel).CreateOrUpdateSession(request, timeout=WAIT)


def update_session(server, identity, **update):
    request = spb.CreateOrUpdateSessionRequest(identity=identity, updates=[spb.SessionUpdate(**update)])
    sgrpc.SessionStoreStub(server.channel).CreateOrUpdateSession(request, timeout=WAIT)


def periodic(channel, start, values):
    return data_pb2.PeriodicData(
        channel_id=channel,
        start_timestamp=start,
        interval=MS,
        samples=len(values),
        buffer=struct.pack(f"<{len(values)}h", *values),
    )


def event(t, n):
    return data_pb2.Event(event_definition_id=n, app_name="app", timestamp=t, status_text=f"e{n}", raw_data=[n])


def write(server, identity, items):
    """Write items through gRPC DataWriter and flush."""

    def messages():
        yield cpb.WriteDataStreamMessage(data_identity=identity)
        for item in items:
            field = "event" if isinstance(item, data_pb2.Event) else "periodic_data"
            yield cpb.WriteDataStreamMessage(**{field: item})
        yield cpb.WriteDataStreamMessage(flush_marker="done")

    replies = list(cgrpc.DataWriterStub(server.channel).WriteDataStream(messages(), timeout=60))
    assert [r.flush_completed for r in replies] == ["done"]


def ws_connect(server, identity, **kwargs):
    return connect(
        server.url(identity), subprotocols=[SUBPROTOCOL], compression=None, proxy=None, open_timeout=WAIT, **kwargs
    )


def decode(message):
    assert isinstance(message, bytes), "every server message is binary"
    burst = stream_pb2.StreamDataBurst.FromString(lz4.frame.decompress(message))
    return [(d.WhichOneof("type"), getattr(d, d.WhichOneof("type"))) for d in burst.data]


def subscribe(ws, **subscription):
    ws.send(stream_pb2.StreamRequest(subscribe=stream_pb2.StreamSubscription(**subscription)).SerializeToString())


class Received:
    """Everything a client got, split by kind."""

    def __init__(self, ws):
        self.ws, self.items = ws, []

    def of(self, kind):
        return [v for k, v in self.items if k == kind]

    def until(self, done, what):
        deadline = time.monotonic() + WAIT
        while not done(self):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; got {[k for k, _ in self.items]}"
            try:
                self.items += decode(self.ws.recv(timeout=left))
            except TimeoutError:
                pass
        return self

    def data(self):
        return [(v.channel_id, v.start_timestamp) for v in self.of("periodic_data")]


def first_message(ws):
    items = decode(ws.recv(timeout=WAIT))
    assert [k for k, _ in items] == ["session_json"], "the first message holds the session JSON only"
    return json.loads(items[0][1])


# --- the handshake -------------------------------------------------------------------------------------


def test_plain_get_is_400(A):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{A.http}/rta/v2/sessions/x/stream", timeout=WAIT)
    assert info.value.code == 400
    assert "WebSocket" in json.loads(info.value.read())["error"]


@pytest.mark.parametrize("protocols", [None, ["something-else"]])
def test_missing_subprotocol_is_406(A, M, protocols):
    identity = new_identity()
    create_session(A, identity)
    for server in (A, M):
        with pytest.raises(websockets.InvalidStatus) as info:
            connect(server.url(identity), subprotocols=protocols, proxy=None, open_timeout=WAIT)
        assert info.value.response.status_code == 406


@pytest.mark.parametrize("state", [None, 4, 28])
def test_sessions_that_cannot_be_streamed_close_normally_without_a_message(A, state):
    identity = new_identity()
    if state is not None:
        create_session(A, identity, state=state)
    with ws_connect(A, identity) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        with pytest.raises(websockets.ConnectionClosedOK) as info:
            ws.recv(timeout=WAIT)
        assert info.value.rcvd.code == 1000


# --- streaming -------------------------------------------------------------------------------------------


def test_join_before_data_then_live(A):
    identity = new_identity()
    create_session(A, identity, update_details=spb.SessionUpdate.DetailsMap(details={"Driver": "Ann"}))
    with ws_connect(A, identity) as ws:
        session = first_message(ws)
        assert (session["identity"], session["state"], session["details"]) == (identity, "open", {"Driver": "Ann"})
        subscribe(ws, all_data_channels=True, all_events=True)
        items = [periodic(1, T0 + i * 10 * MS, list(range(i, i + 10))) for i in range(20)]
        write(A, identity, items[:10] + [event(T0 + 5 * MS, 3)] + items[10:])
        got = Received(ws).until(lambda r: len(r.of("periodic_data")) == 20 and r.of("event"), "the data")
        assert got.of("periodic_data") == items
        assert got.of("event") == [event(T0 + 5 * MS, 3)]
        got.until(lambda r: r.of("time_range") and r.of("time_range")[-1].end_time == T0 + 199 * MS, "time range")
        assert got.of("time_range")[-1].start_time == T0


def test_join_after_data_back_fill_then_live(A):
    identity = new_identity()
    create_session(A, identity)
    before = [periodic(7, T0 + i * 10 * MS, [i] * 10) for i in range(30)]
    write(A, identity, before)
    with ws_connect(A, identity) as ws:
        first_message(ws)
        got = Received(ws)
        subscribe(ws, all_data_channels=True)
        got.until(lambda r: len(r.of("periodic_data")) == 30, "the back-fill")
        after = [periodic(7, T0 + (30 + i) * 10 * MS, [i] * 10) for i in range(30)]
        write(A, identity, after)
        got.until(lambda r: len(r.of("periodic_data")) >= 60, "the live data")
        assert got.of("periodic_data") == before + after
        assert got.of("event") == []


def test_subscriptions_widen_with_back_fill_of_what_they_add(A):
    identity = new_identity()
    create_session(A, identity)
    write(A, identity, [periodic(1, T0, [1]), periodic(2, T0, [2]), event(T0, 1), periodic(1, T0 + MS, [3])])
    with ws_connect(A, identity) as ws:
        first_message(ws)
        got = Received(ws)
        subscribe(ws, data_channel_ids=[1])
        got.until(lambda r: len(r.of("periodic_data")) == 2, "channel 1")
        write(A, identity, [periodic(2, T0 + 2 * MS, [4]), periodic(1, T0 + 2 * MS, [5])])
        got.until(lambda r: len(r.of("periodic_data")) == 3, "live channel 1")
        assert got.data() == [(1, T0), (1, T0 + MS), (1, T0 + 2 * MS)]
        subscribe(ws, data_channel_ids=[2])  # widens: channel 2's history, then both live
        got.until(lambda r: len(r.of("periodic_data")) == 5, "channel 2's back-fill")
        write(A, identity, [periodic(2, T0 + 3 * MS, [6]), periodic(1, T0 + 3 * MS, [7])])
        got.until(lambda r: len(r.of("periodic_data")) == 7, "both channels live")
        assert got.data()[3:] == [(2, T0), (2, T0 + 2 * MS), (2, T0 + 3 * MS), (1, T0 + 3 * MS)]
        assert got.of("event") == []
        subscribe(ws, all_events=True)
        got.until(lambda r: r.of("event"), "the events")
        assert got.of("event") == [event(T0, 1)] and len(got.of("periodic_data")) == 7


def test_json_updates_and_the_session_closing(A):
    identity = new_identity()
    create_session(A, identity)
    with ws_connect(A, identity) as ws:
        first_message(ws)
        subscribe(ws, all_data_channels=True)
        update_session(A, identity, update_details=spb.SessionUpdate.DetailsMap(details={"Lap": "2"}))
        got = Received(ws).until(
            lambda r: any(json.loads(j).get("details") == {"Lap": "2"} for j in r.of("session_json")), "the update"
        )
        write(A, identity, [periodic(3, T0, [1, 2])])
        update_session(A, identity, set_state=4)
        with pytest.raises(websockets.ConnectionClosedOK) as info:
            got.until(lambda r: False, "the close")
        assert info.value.rcvd.code == 1000
        assert json.loads(got.of("session_json")[-1])["state"] == "closed"
        assert got.of("periodic_data") == [periodic(3, T0, [1, 2])]


def test_deleting_a_session_closes_its_watchers_normally(A, B):
    identity = new_identity()
    create_session(A, identity)
    write(A, identity, [periodic(3, T0, [1, 2])])  # a directory entry and a stream exist
    with ws_connect(A, identity) as on_a, ws_connect(B, identity) as on_b:
        first_message(on_a)
        first_message(on_b)
        sgrpc.SessionStoreStub(A.channel).DeleteSessions(spb.DeleteSessionsRequest(identities=[identity]), timeout=WAIT)
        for ws in (on_a, on_b):  # the deleting process and another one sharing the Redis buffer
            got = Received(ws)
            with pytest.raises(websockets.ConnectionClosedOK) as info:
                got.until(lambda r: False, "the close")
            assert info.value.rcvd.code == 1000  # (daphne sends no close reason)
            assert all(json.loads(j)["state"] == "open" for j in got.of("session_json"))  # not a session close


def test_two_server_processes_share_one_redis(A, B):
    identity = new_identity()
    create_session(A, identity)
    write(A, identity, [periodic(1, T0, [1])])
    with ws_connect(B, identity) as ws:
        assert first_message(ws)["state"] == "open"
        subscribe(ws, all_data_channels=True)
        got = Received(ws).until(lambda r: r.of("periodic_data"), "back-fill through B")
        write(A, identity, [periodic(1, T0 + MS, [2])])
        got.until(lambda r: len(r.of("periodic_data")) == 2, "live data written through A")
        update_session(A, identity, update_details=spb.SessionUpdate.DetailsMap(details={"Via": "A"}))
        got.until(lambda r: any('"Via":"A"' in j for j in r.of("session_json")), "a JSON update made on A")
        assert got.data() == [(1, T0), (1, T0 + MS)]


def test_single_process_without_redis(M):
    identity = new_identity()
    create_session(M, identity)
    write(M, identity, [periodic(4, T0, [1])])
    with ws_connect(M, identity) as ws:
        assert first_message(ws)["identity"] == identity
        subscribe(ws, all_data_channels=True, all_events=True)
        got = Received(ws).until(lambda r: r.of("periodic_data"), "the back-fill")
        write(M, identity, [periodic(4, T0 + MS, [2]), event(T0 + MS, 9)])
        got.until(lambda r: len(r.of("periodic_data")) == 2 and r.of("event"), "live data")
        update_session(M, identity, set_state=12)
        with pytest.raises(websockets.ConnectionClosedOK):
            got.until(lambda r: False, "the close")
        assert json.loads(got.of("session_json")[-1])["state"] == "truncated"


def test_a_third_party_ingest_speaking_the_protocol_interoperates(A, live_redis_url):
    """Only raw Redis commands and lz4.frame here: what any other ingest would do."""
    raw = redis.Redis.from_url(live_redis_url)
    identity, name = new_identity(), f"car-{uuid.uuid4()}"
    sid = raw.incrby("lastStreamSessionId", 1)
    raw.sadd("streams", name)
    session_json = json.dumps(
        {"identity": identity, "state": "open", "timestamp": "2027-01-15T10:00:00+00:00", "identifier": "third party"}
    )
    raw.hset(
        f"sessions:{identity}",
        mapping={
            "streamSessionId": sid,
            "streamName": name,
            "streamPosition": "0-0",
            "lastUpdated": int(time.time() * 1000),
            "json": session_json,
            "tStart": T0,
            "tEnd": T0,
        },
    )
    raw.expire(f"sessions:{identity}", 600)

    def publish(*items, session_id=sid):
        burst = stream_pb2.StreamDataBurst(data=[stream_pb2.StreamData(periodic_data=i) for i in items])
        raw.xadd(f"stream:{name}", {"id": session_id, "data": lz4.frame.compress(burst.SerializeToString())})

    publish(periodic(1, T0, [1]), periodic(2, T0, [2]))
    publish(periodic(1, T0 + MS, [3]), session_id=sid + 1000)  # another session sharing the stream
    with ws_connect(A, identity) as ws:
        assert first_message(ws)["identifier"] == "third party"
        subscribe(ws, all_data_channels=True)
        got = Received(ws).until(lambda r: len(r.of("periodic_data")) == 2, "the back-fill")
        publish(periodic(1, T0 + 2 * MS, [4]))
        raw.hset(f"sessions:{identity}", mapping={"tEnd": T0 + 2 * MS})
        got.until(lambda r: len(r.of("periodic_data")) == 3, "live data")
        got.until(lambda r: r.of("time_range") and r.of("time_range")[-1].end_time == T0 + 2 * MS, "the time range")
        assert got.data() == [(1, T0), (2, T0), (1, T0 + 2 * MS)]
        raw.hset(f"sessions:{identity}", "json", session_json.replace('"open"', '"closed"'))
        with pytest.raises(websockets.ConnectionClosedOK):
            got.until(lambda r: False, "the close")
    raw.close()


# --- misbehaving clients ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\xff\xff\xff\xff", 1002),  # not a StreamRequest
        (b"", 1002),  # a StreamRequest asking for nothing
        (b"\x0a\x02\x08\x01", 1002),  # only the reserved field 1
        ("text frames are not the protocol", 1003),
        (b"\x12" + b"\x80" * 70_000, 1009),  # far beyond any real request
    ],
)
def test_garbage_client_frames_close_with_a_protocol_error(A, frame, code):
    identity = new_identity()
    create_session(A, identity)
    with ws_connect(A, identity, max_size=None) as ws:
        first_message(ws)
        ws.send(frame)
        with pytest.raises(websockets.ConnectionClosedError) as info:
            Received(ws).until(lambda r: False, "the close")
        assert info.value.rcvd.code == code
    # The server carries on.
    with ws_connect(A, identity) as ws:
        assert first_message(ws)["identity"] == identity


def test_a_slow_client_is_dropped(A, B):
    identity = new_identity()
    create_session(A, identity)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no kernel buffer to hide in
    sock.connect(("127.0.0.1", B.http))
    rng = random.Random(1)
    with connect(
        B.url(identity),
        sock=sock,
        subprotocols=[SUBPROTOCOL],
        compression=None,
        proxy=None,
        open_timeout=WAIT,
        max_queue=1,
    ) as ws:
        first_message(ws)
        subscribe(ws, all_data_channels=True)
        write(A, identity, [periodic(2, T0, [0])])  # another channel than the noise (other sample width)
        Received(ws).until(lambda r: r.of("periodic_data"), "the first item: the subscription is live")
        # ~12 MB of incompressible samples while the client reads nothing (B drops clients past 512 KiB).
        noise = [
            data_pb2.PeriodicData(
                channel_id=1, start_timestamp=T0 + i * 512 * MS, interval=MS, samples=512, buffer=rng.randbytes(4096)
            )
            for i in range(3000)
        ]
        write(A, identity, noise)
        with pytest.raises(websockets.ConnectionClosedError) as info:
            Received(ws).until(lambda r: False, "the drop")
        # The close frame waits behind the data; the server may cut the connection before it arrives.
        assert info.value.rcvd is None or info.value.rcvd.code == 1008
    assert "dropping a slow client" in B.log.read_text()
    with ws_connect(B, identity) as ws:
        assert first_message(ws)["identity"] == identity


def test_an_idle_client_outlives_the_redis_read_timeout(A, B):
    """redis-py 8 reads time out after 5 s by default; the channel layer's blocking receive must survive it."""
    identity = new_identity()
    create_session(A, identity)
    with ws_connect(B, identity) as ws:
        first_message(ws)
        time.sleep(6.5)
        update_session(A, identity, update_details=spb.SessionUpdate.DetailsMap(details={"Still": "here"}))
        Received(ws).until(lambda r: any('"Still":"here"' in j for j in r.of("session_json")), "the update")


def test_other_websocket_paths_are_404(A):
    with pytest.raises(websockets.InvalidStatus) as info:
        connect(
            f"ws://127.0.0.1:{A.http}/rta/v2/sessions/x/elsewhere",
            subprotocols=[SUBPROTOCOL],
            proxy=None,
            open_timeout=WAIT,
        )
    assert info.value.response.status_code == 404
