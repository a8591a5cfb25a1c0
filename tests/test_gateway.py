"""The gateway (spec §13) end to end: real server processes, real sockets.

Two data servers (``manage.py serve`` with RTA_EXPOSE_DATA_SERVICE, "remote A"
and "remote B") hold data written over gRPC DataWriter; a gateway server
lists them in RTA_DATA_SERVICES and holds data of its own plus copies of
theirs, so every session read through the data services is compared with
the same bindings read from its own store: sample by sample and chunk
boundary by chunk boundary, and untransformed chunks byte for byte with the
data service's own response. A second gateway points at small HTTP stubs in
this process for what real data services do not show: the request they get
(path, percent-encoding, channels, bounds, token), failures (500, a closed
port, a stalled service, a body cut midway) and ``/health``.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import grpc
import pytest

from rta_kit import wire
from tests.conftest import free_port, wait_until_serving
from tests.test_data_bindings import KINDS, T0, S, expected, identity_items, items_of, samples_of, served
from tests.test_data_bindings import binding as data_binding
from tests.test_serve import ROOT

WAIT = 60  # seconds a test waits for something before failing
A_ID = 'team/car a "1"=%41'  # identities travel percent-encoded: "/", quotes, spaces, "=", "%"
B_ID = "b/../c d"
L_ID = "car-l"
CHANNELS = {"periodic": "0-", "timestamped": "0-", "row": "0-", "events": None}


# --- servers --------------------------------------------------------------------------------------


def _environment(tmp, name, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    env["RTA_DATABASE_URL"] = f"sqlite:///{tmp / (name + '.sqlite3')}"
    env["RTA_DATA_PATH"] = str(tmp / f"{name}-data")
    env["RTA_LOG_LEVEL"] = "WARNING"
    env.update(extra)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return env


class Server:
    """``manage.py serve`` (HTTP and gRPC) on free loopback ports."""

    def __init__(self, tmp, name, **extra):
        self.env = _environment(tmp, name, **extra)
        self.port, self.grpc_port, self.log = free_port(), free_port(), tmp / f"{name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--bind", "127.0.0.1"]
                + ["--http-port", str(self.port), "--grpc-port", str(self.grpc_port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until_serving(self.process, self.url("/"), self.log, WAIT)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def write(self, identity, items):
        """Items written over gRPC DataWriter, flushed."""
        from rta.toolkit.api import chunk_service_pb2 as pb
        from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

        field = {"periodic": "periodic_data", "timestamped": "timestamped_data", "row": "row_data", "events": "event"}

        def messages():
            yield pb.WriteDataStreamMessage(data_identity=identity)
            for kind, item in items:
                yield pb.WriteDataStreamMessage(**{field[kind]: item})
            yield pb.WriteDataStreamMessage(flush_marker="end")

        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            answers = pb_grpc.DataWriterStub(channel).WriteDataStream(messages(), timeout=WAIT)
            assert [a.flush_completed for a in answers] == ["end"]

    def sessions(self, sessions):
        """Create closed sessions ``{identity: [binding, ...]}`` in this server's database."""
        script = (
            "import json, sys\n"
            "from sessions_app.services.updates import create_or_update_session\n"
            "for identity, bindings in json.loads(sys.stdin.read()).items():\n"
            "    create_or_update_session(identity, [('set_state', 4), ('set_data_bindings', bindings)])\n"
        )
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=self.env,
            input=json.dumps(sessions).encode(),
            check=True,
            capture_output=True,
        )

    def stop(self):
        self.process.kill()
        self.process.wait()


def get(url, headers=None, timeout=WAIT):
    """(status, headers, body) of a GET; errors are answers too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def binding(identity, source="", **fields):
    """A data binding of ``source`` (the other fields as ``test_data_bindings.binding`` takes them)."""
    return {"source": source, **data_binding(identity, **fields)}


def local_copy(bindings):
    return [{**b, "source": ""} for b in bindings]


# Sessions read through the data services, each beside its reference: the same bindings, all local.
SESSIONS = {
    "composed": [  # local + two remote sources; offset, clipping, re-mapping (data channel 1 twice in B)
        binding(L_ID, maps=[(1, 1, 3), (5, 5, 6)], end=T0 + 15 * S),
        binding(
            A_ID,
            "remote-a",
            offset=-2 * S,
            start=T0 + 3 * S,
            end=T0 + 15 * S + 7,
            maps=[(1, 0x11, 0x13), (5, 0x15, 0x16)],
        ),
        binding(B_ID, "remote-b", offset=S // 2, maps=[(1, 0x21, 0x23), (5, 0x25, 0x26), (1, 0x31, 0x31)]),
    ],
    "plain": [binding(A_ID, "remote-a")],  # no channel bindings anywhere: all channels, untransformed
    "merged": [  # two remote bindings feeding the same channels over overlapping times: merged windows
        binding(A_ID, "remote-a", maps=[(1, 1, 3)], time_ref=1),
        binding(B_ID, "remote-b", offset=S // 2 + 1, start=T0 + 5 * S, maps=[(1, 1, 3), (5, 5, 6)], time_ref=2),
    ],
    "rule-none": [  # no channel bindings anywhere: both pass every channel through
        binding(A_ID, "remote-a", end=T0 + 10 * S - 1, time_ref=1),
        binding(B_ID, "remote-b", offset=10 * S, start=T0 + 10 * S, time_ref=2),
    ],
    "rule-any": [  # B has channel bindings: A, without, serves events only
        binding(A_ID, "remote-a", offset=S),
        binding(B_ID, "remote-b", maps=[(1, 0x101, 0x102), (5, 0x105, 0x105)]),
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    written = {L_ID: identity_items(L_ID, 200), A_ID: identity_items(A_ID, 0), B_ID: identity_items(B_ID, 100)}
    remotes = {}
    try:
        for name, identity in (("remote-a", A_ID), ("remote-b", B_ID)):
            remotes[name] = Server(tmp, name, RTA_EXPOSE_DATA_SERVICE="true")
            remotes[name].write(identity, written[identity])
        services = ",".join(
            [
                f"remote-a=http://127.0.0.1:{remotes['remote-a'].port}",
                f"remote-b=http://127.0.0.1:{remotes['remote-b'].port}/",
            ]
        )
        gateway = remotes["gateway"] = Server(tmp, "gateway", RTA_DATA_SERVICES=services)
        for identity, items in written.items():
            gateway.write(identity, items)  # its own L, and copies of A's and B's data for the references
        sessions = dict(SESSIONS)
        sessions.update({f"{name}-reference": local_copy(bindings) for name, bindings in SESSIONS.items()})
        gateway.sessions(sessions)
        by_kind = {
            identity: {kind: [i for k, i in items if k == kind] for kind in KINDS}
            for identity, items in written.items()
        }
        yield gateway, remotes, by_kind
    finally:
        for server in remotes.values():
            server.stop()


def read(server, session, kind, channels=None, headers=None, **params):
    expression = channels if channels is not None else CHANNELS[kind]
    path = f"/rta/v2/sessions/{quote(session, safe='')}/data/{kind}" + (f"/{expression}" if expression else "")
    if params:
        path += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    status, response_headers, body = get(server.url(path), headers)
    assert status == 200, body[:300]
    assert response_headers["Content-Type"] == wire.MEDIA_TYPE
    return wire.read_chunks(body)


def per_channel(kind, chunks):
    """Each channel key's chunks in order: (start, end, samples)."""
    out = {}
    for chunk in chunks:
        samples = samples_of(kind, items_of(kind, chunk.decode(kind)))
        out.setdefault(tuple(chunk.channel_ids), []).append((chunk.start, chunk.end, samples))
    return out


# --- composition ----------------------------------------------------------------------------------


# Merged windows fed by remote bindings only: their chunk spans are unknown here (no index), so windows
# are a second long; locally they take the smallest stored chunk span.
WINDOWED_REMOTELY = {("rule-any", "events")}


@pytest.mark.parametrize("session", ["composed", "rule-none", "rule-any"])
def test_sessions_match_the_same_bindings_served_locally(world, session):
    gateway, _, written = world
    for kind in KINDS:
        chunks = read(gateway, session, kind)
        want = expected(kind, written, SESSIONS[session])
        assert want, f"{kind}: the case serves something"
        assert served(kind, chunks) == want, kind  # sample by sample, and the chunk rules
        reference = read(gateway, f"{session}-reference", kind)
        if (session, kind) in WINDOWED_REMOTELY:  # the windows' span: one second, not the stored chunks' span
            assert served(kind, reference) == want
        else:
            assert per_channel(kind, chunks) == per_channel(kind, reference), f"{kind}: chunk boundaries"


def test_request_bounds_and_channels_are_session_terms(world):
    gateway, _, _ = world
    for kind, channels in (
        ("periodic", "2-12,15,22-31"),
        ("timestamped", "6,16,25-26"),
        ("row", "12"),
        ("events", None),
    ):
        params = {"start": T0 + 6 * S + 1, "end": T0 + 9 * S}
        chunks = read(gateway, "composed", kind, channels, **params)
        reference = read(gateway, "composed-reference", kind, channels, **params)
        assert chunks, kind
        assert per_channel(kind, chunks) == per_channel(kind, reference), kind


def test_the_binding_rule_both_ways(world):
    gateway, _, _ = world
    none = {key for c in read(gateway, "rule-none", "periodic") for key in c.channel_ids}
    assert none == {1, 2, 3}  # both bindings, no channel bindings: data channels as themselves
    any_ = read(gateway, "rule-any", "periodic")
    assert {key for c in any_ for key in c.channel_ids} == {0x101, 0x102}  # only B's mapped channels
    events = served("events", read(gateway, "rule-any", "events"))
    assert {value[1].rsplit("-", 1)[0] for _, _, value in events} == {A_ID, B_ID}  # A still serves events


def test_merged_windows_hold_every_sample_without_overlap(world):
    gateway, _, written = world
    for kind in KINDS:
        chunks = read(gateway, "merged", kind)
        assert served(kind, chunks) == expected(kind, written, SESSIONS["merged"]), kind  # no overlap, in order
        assert served(kind, chunks) == served(kind, read(gateway, "merged-reference", kind)), kind


def test_untransformed_chunks_are_relayed_byte_for_byte(world):
    gateway, remotes, _ = world
    remote = remotes["remote-a"]
    for kind in KINDS:
        path = f"/rta/v2/data/{quote(A_ID, safe='')}/{kind}" + ("" if kind == "events" else "/0-")
        status, _, body = get(remote.url(path))
        assert status == 200
        own = [
            (c.start, c.end, c.channel_ids, c.compression, c.unpacked_length, c.packed) for c in wire.read_chunks(body)
        ]
        relayed = read(gateway, "plain", kind)
        assert (
            own
            and [(c.start, c.end, c.channel_ids, c.compression, c.unpacked_length, c.packed) for c in relayed] == own
        ), kind


# --- what a data service is asked, and failures (stubs) ---------------------------------------------


class Stub:
    """A data service stub: records each request's raw path and headers, answers by ``mode``.

    ok: 200 and an empty chunk stream; 500: a JSON 500; stall: no answer at all; midway: 200, one chunk
    of a promised longer body, then the connection closes. ``GET /`` is 200 unless stalled.
    """

    def __init__(self, mode="ok", port=0):
        self.mode, self.requests, self.release = mode, [], threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                stub.requests.append((self.path, self.headers.get("Authorization")))
                if stub.mode == "stall":
                    stub.release.wait(WAIT)
                    self.close_connection = True
                    return
                if self.path == "/" or stub.mode == "ok":
                    body = b"ok" if self.path == "/" else b""
                    self._answer(200, wire.MEDIA_TYPE, body)
                elif stub.mode == "500":
                    self._answer(500, "application/json", b'{"error": "boom"}')
                elif stub.mode == "midway":
                    chunk = wire.ChunkStreamWriter().chunk(T0, T0 + 1, [1], b"\x08\x01" * 50)
                    self.send_response(200)
                    self.send_header("Content-Type", wire.MEDIA_TYPE)
                    self.send_header("Content-Length", str(100_000))
                    self.end_headers()
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True

            def _answer(self, status, content_type, body):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


AWKWARD = 'run 7/lap "3"=x%41 é'


@pytest.fixture(scope="module")
def stubbed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stubbed")
    stubs = {"rec": Stub(), "err": Stub("500"), "stall": Stub("stall"), "midway": Stub("midway")}
    closed = free_port()  # nothing listens here (until the health test recovers it)
    services = {name: f"http://127.0.0.1:{stub.port}" for name, stub in stubs.items()}
    services["rec"] += "/prefix/"  # a base path, with a trailing slash: no doubled slash
    services["closed"] = f"http://127.0.0.1:{closed}"
    gateway = Server(
        tmp,
        "stubbed",
        RTA_DATA_SERVICES=",".join(f"{name}={url}" for name, url in services.items()),
        RTA_DATA_SERVICE_TIMEOUT="1",
        RTA_DATA_SERVICE_HEALTH_TIMEOUT="1",
    )
    try:
        gateway.sessions(
            {
                "asked": [
                    binding(
                        AWKWARD,
                        "rec",
                        offset=1000,
                        start=T0,
                        end=T0 + 50,
                        maps=[(0x10, 0x110, 0x112), (0x20, 0x200, 0x200)],
                    )
                ],
                "dots": [binding("..", "rec")],
                **{
                    f"fails-{name}": [binding("secret-identity", name)] for name in ("err", "closed", "stall", "midway")
                },
            }
        )
        yield gateway, stubs, closed
    finally:
        gateway.stop()
        for stub in stubs.values():
            stub.stop()


def test_a_data_service_is_asked_for_mapped_channels_and_bounds_with_the_token(stubbed):
    gateway, stubs, _ = stubbed
    rec = stubs["rec"]
    rec.requests.clear()
    chunks = read(
        gateway, "asked", "periodic", "111-200", headers={"Authorization": "Bearer t0ken"}, start=T0 - 100, end=T0 + 20
    )
    assert chunks == []
    # Data channels 0x11-0x12 (session 0x111-0x112) and 0x20 (0x200); session [T0, T0+20] minus the offset.
    segment = "run%207%2Flap%20%223%22%3Dx%2541%20%C3%A9"
    assert rec.requests == [
        (f"/prefix/rta/v2/data/{segment}/periodic/11-12,20?start={T0 - 1000}&end={T0 - 980}", "Bearer t0ken")
    ]
    rec.requests.clear()
    read(gateway, "dots", "events")  # no token sent: none forwarded; ".." cannot be taken for a parent
    assert rec.requests == [("/prefix/rta/v2/data/%2E%2E/events", None)]


@pytest.mark.parametrize(
    "source, status",
    [("err", 502), ("closed", 502), ("stall", 504)],
)
def test_failing_data_services_are_json_errors_naming_the_source(stubbed, source, status):
    gateway, stubs, closed = stubbed
    got, headers, body = get(gateway.url(f"/rta/v2/sessions/fails-{source}/data/periodic/0-"))
    assert got == status
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert f"{source!r}" in error
    ports = [str(stub.port) for stub in stubs.values()] + [str(closed)]
    assert "secret" not in error and "127.0.0.1" not in error and not any(port in error for port in ports)


def test_a_failure_after_the_first_byte_aborts_the_response(stubbed):
    gateway, _, _ = stubbed
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT)
    sock.sendall(b"GET /rta/v2/sessions/fails-midway/data/periodic/0- HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # dropped: what the client sees, as well as a close
    finally:
        sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert not body.endswith(b"0\r\n\r\n"), "the body must not end as if complete"
    data = _dechunk_prefix(body)
    with pytest.raises(wire.ChunkFormatError):
        wire.read_chunks(data)  # and what arrived is not a whole chunk stream either


def _dechunk_prefix(body):
    """The data of HTTP chunks received whole."""
    out, pos = b"", 0
    while (end := body.find(b"\r\n", pos)) >= 0:
        size = int(body[pos:end].split(b";")[0] or b"0", 16)
        if size == 0 or end + 2 + size > len(body):
            break
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return out


def test_health_names_failing_data_services_and_recovers_by_itself(stubbed):
    gateway, stubs, closed = stubbed
    status, _, body = get(gateway.url("/health"))
    text = body.decode()
    assert status == 503, text
    assert "data service closed:" in text and "data service stall:" in text
    assert "data service rec:" not in text and "data service err:" not in text  # their root answers 200
    assert "127.0.0.1" not in text
    revived = Stub(port=closed)
    stubs["stall"].mode = "ok"
    stubs["stall"].release.set()
    try:
        deadline = time.monotonic() + WAIT
        while (answer := get(gateway.url("/health")))[0] != 200:
            assert time.monotonic() < deadline, answer[2]
            time.sleep(0.2)
        assert answer[2] == b"Healthy"
    finally:
        revived.stop()
        stubs["stall"].mode = "stall"
        stubs["stall"].release.clear()
