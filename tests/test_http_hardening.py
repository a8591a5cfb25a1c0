"""Careless and hostile HTTP clients (issue 16): bounded bodies, timeouts, slow readers, honest logs.

Real ``manage.py serve`` processes on the embedded defaults (SQLite, files)
serve stored data to raw sockets: a body too large (#4), a client going away
mid-download (#7), stalled readers and trickled requests (#9), the access log
and JSON logs. Django's test client covers what needs no socket: 405, 406 and
404 answers and the OpenAPI document (#11), the metrics of the data path.
"""

import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from tests.conftest import free_port, wait_until_serving
from tests.test_serve import ROOT

MiB = 1024 * 1024
WAIT = 60  # seconds a test waits for something before failing

WRITE = """
import numpy as np
from rta.model import data_pb2
from data_app.store.writer import ChunkWriter
from sessions_app.services.updates import create_or_update_session
noise = np.random.default_rng(1).integers(-32768, 32767, size=1_000_000, dtype=np.int16).tobytes()
start = 1_700_000_000 * 10**9
for identity, items, samples in (("big", 24, 500_000), ("small", 1, 100_000)):
    create_or_update_session(identity, [("set_state", 4)])
    writer = ChunkWriter(identity)
    for i in range(items):
        writer.add("periodic", data_pb2.PeriodicData(channel_id=1, start_timestamp=start + i * samples * 10**6,
                                                     interval=10**6, samples=samples,
                                                     buffer=noise[(i % 2) * 1_000_000:][:2 * samples]))
    writer.flush()
"""


# --- servers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """An embedded-defaults environment holding sessions "big" (~24 MB of periodic data) and "small"."""
    tmp = tmp_path_factory.mktemp("hardening")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    env["RTA_DATABASE_URL"] = f"sqlite:///{tmp / 'rta.sqlite3'}"
    env["RTA_DATA_PATH"] = str(tmp / "data")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", WRITE], cwd=ROOT, env=env, check=True)
    return env, tmp


class Server:
    def __init__(self, env, log):
        self.port, self.log = free_port(), log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "serve",
                    "--bind",
                    "127.0.0.1",
                    "--http-port",
                    str(self.port),
                    "--no-grpc",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until_serving(self.process, self.url("/health"), self.log, WAIT)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self):
        return self.log.read_text(errors="replace")

    def metric(self, name, labels=""):
        """A sample's value from /metrics (0 when absent)."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
                    return float(line.split()[-1])
        return 0.0

    def wait_for_metric(self, name, labels, at_least):
        deadline = time.monotonic() + WAIT
        while (value := self.metric(name, labels)) < at_least:
            assert time.monotonic() < deadline, f"{name}{labels} stayed at {value}, below {at_least}"
            time.sleep(0.1)
        return value

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def server(stored):
    """Short request timeouts, a short send timeout, JSON logs."""
    env, tmp = stored
    env = {
        **env,
        "RTA_HTTP_HEADER_TIMEOUT": "1",
        "RTA_HTTP_BODY_TIMEOUT": "1",
        "RTA_HTTP_SEND_TIMEOUT": "2",
        "RTA_LOG_FORMAT": "json",
    }
    server = Server(env, tmp / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def budget_server(stored):
    """Room for two stalled data responses (4 MiB blocks, each counted twice); no send timeout, no access log."""
    env, tmp = stored
    env = {**env, "RTA_HTTP_RESPONSE_BUFFER_BYTES": str(20 * MiB), "RTA_HTTP_SEND_TIMEOUT": "0"}
    env["RTA_ACCESS_LOG"] = "false"
    server = Server(env, tmp / "budget.log")
    yield server
    server.stop()


# --- raw sockets ----------------------------------------------------------------------------------


def connect(port, receive_buffer=None):
    sock = socket.socket()
    if receive_buffer:  # before connecting, so that the window is sized to it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    return sock


def read_head(sock):
    """``(status, headers, body bytes received so far)`` of the response on ``sock``."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response head: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def read_response(sock):
    """``(status, headers, whole body)`` of a response with a Content-Length."""
    status, headers, body = read_head(sock)
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(1 << 20)
        assert chunk, "the connection closed mid-body"
        body += chunk
    return status, headers, body


def reset(sock):
    """Close abruptly (RST), as a client killed mid-download does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def dropped_by_server(sock):
    """Whether the server has ended the connection (reset or closed), without reading from it."""
    poller = select.poll()
    poller.register(sock, select.POLLHUP | select.POLLERR | select.POLLRDHUP)
    return any(event & (select.POLLHUP | select.POLLERR | select.POLLRDHUP) for _, event in poller.poll(100))


def wait_dropped(sock):
    deadline = time.monotonic() + WAIT
    while not dropped_by_server(sock):
        assert time.monotonic() < deadline, "the server kept the connection"


def get(port, path, receive_buffer=None):
    sock = connect(port, receive_buffer)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def log_lines(server):
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


# --- #4 request bodies ----------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(server):
    sock = connect(server.port)
    sock.sendall(
        b"POST /rta/v2/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 200000000\r\n\r\n"
    )  # and no body: the answer must come from the Content-Length alone
    status, headers, body = read_response(sock)
    sock.close()
    assert status == 413 and headers["content-type"] == "application/json"
    assert "limit of 2621440 bytes" in json.loads(body)["error"]


def test_a_form_over_the_limit_sent_whole_is_answered_413_json(server):
    form = urlencode({"query": "x" * (3 * MiB)}).encode()
    request = urllib.request.Request(
        server.url("/rta/v2/sessions"), data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=WAIT)
    assert refused.value.code == 413
    assert "limit" in json.loads(refused.value.read())["error"]


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(server):
    sock = connect(server.port)
    sock.sendall(
        b"POST /rta/v2/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"%x\r\n%s\r\n" % (64 * 1024, b"q" * 64 * 1024)
    sent = 0
    while not select.select([sock], [], [], 0)[0]:  # no end of body ever: the server must answer first
        assert sent < 8 * MiB, "the server took 8 MiB of a chunked body without answering"
        sock.sendall(piece)
        sent += 64 * 1024
    status, _, body = read_response(sock)
    sock.close()
    assert status == 413 and "limit of 2621440 bytes" in json.loads(body)["error"]


def test_dependencies_keep_their_own_larger_limit(server):
    document = json.dumps({"anything": "y" * (3 * MiB)}).encode()  # over RTA_HTTP_MAX_BODY_BYTES
    request = urllib.request.Request(
        server.url("/api/dependencies/modelParameters"), data=document, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        assert response.status == 201


def test_the_test_client_gets_413_json_and_too_many_fields_400(api, db):
    response = api.post(
        "/rta/v2/sessions", urlencode({"query": "x" * (3 * MiB)}), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413 and "limit" in response.json()["error"]
    fields = urlencode([(f"f{i}", "1") for i in range(1200)])
    response = api.post("/rta/v2/sessions", fields, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "error" in response.json()


# --- #7 a client going away -----------------------------------------------------------------------


def test_clients_going_away_mid_download_are_not_errors(server):
    rng = random.Random(7)
    for i in range(80):
        if i % 2:  # a large download cut short
            sock = get(server.port, "/rta/v2/sessions/big/data/periodic/1", receive_buffer=256 * 1024)
            status, _, body = read_head(sock)
            assert status == 200
            taken = len(body)
            while taken < rng.randrange(0, 6 * MiB):
                taken += len(sock.recv(1 << 20))
        else:  # a small one read whole, then the client vanishes at once
            sock = get(server.port, "/rta/v2/sessions/small/data/periodic/1")
            assert read_response(sock)[0] == 200
        reset(sock)
    # Every request was logged as it ended; daphne reports an application's failure up to a second later.
    deadline = time.monotonic() + WAIT
    while sum(1 for e in log_lines(server) if e.get("path", "").startswith("/rta/v2/sessions/")) < 80:
        assert time.monotonic() < deadline, "not every download was logged"
        time.sleep(0.1)
    time.sleep(2.5)
    errors = [e["message"] for e in log_lines(server) if e["level"] == "ERROR"]
    assert not errors, f"{len(errors)} errors, the first: {errors[0][:300]}"
    with urllib.request.urlopen(server.url("/rta/v2/sessions/small/data/periodic/1"), timeout=WAIT) as response:
        assert response.status == 200


# --- #9 slow clients ------------------------------------------------------------------------------


def test_header_trickling_is_cut_off(server):
    sock = connect(server.port)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    deadline = time.monotonic() + WAIT
    while not select.select([sock], [], [], 0.2)[0]:  # one header line every 0.2 s, never the end
        assert time.monotonic() < deadline, "the server waited for the headers for ever"
        sock.sendall(b"X-Trickle: 1\r\n")
    status, _, body = read_response(sock)
    sock.close()
    assert status == 408 and "headers" in json.loads(body)["error"]


def test_body_trickling_is_cut_off(server):
    sock = connect(server.port)
    sock.sendall(
        b"POST /rta/v2/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    deadline = time.monotonic() + WAIT
    while not select.select([sock], [], [], 0.2)[0]:
        assert time.monotonic() < deadline, "the server waited for the body for ever"
        sock.sendall(b" ")
    status, _, body = read_response(sock)
    sock.close()
    assert status == 408 and "body" in json.loads(body)["error"]


def test_a_reader_that_stalls_is_dropped_after_the_send_timeout(server):
    before = server.metric("rta_http_connections_closed_total", '{reason="send_timeout"}')
    sock = get(server.port, "/rta/v2/sessions/big/data/periodic/1", receive_buffer=64 * 1024)
    assert read_head(sock)[0] == 200  # then nothing more is read
    wait_dropped(sock)
    sock.close()
    server.wait_for_metric("rta_http_connections_closed_total", '{reason="send_timeout"}', before + 1)


def test_stalled_readers_past_the_budget_drop_the_one_stalled_longest(budget_server):
    def dropped():
        return budget_server.metric("rta_http_connections_closed_total", '{reason="response_budget"}')

    readers, held = [], 0.0
    while dropped() == 0:  # stalled readers one after another until the budget is spent
        assert len(readers) < 6, f"{len(readers)} stalled readers hold {held} bytes and none was dropped"
        sock = get(budget_server.port, "/rta/v2/sessions/big/data/periodic/1", receive_buffer=64 * 1024)
        readers.append((sock, read_head(sock)))
        deadline = time.monotonic() + WAIT
        while (now := budget_server.metric("rta_http_stalled_response_bytes")) <= held and dropped() == 0:
            assert time.monotonic() < deadline, "the new reader never stalled"
            time.sleep(0.1)
        held = now
    assert len(readers) >= 3  # two 4 MiB blocks (each counted twice) fit in 20 MiB
    wait_dropped(readers[0][0])  # the one stalled longest
    readers[0][0].close()
    for sock, (status, headers, body) in readers[1:]:  # the others are served whole once they read
        assert status == 200
        got = len(body)
        while got < int(headers["content-length"]) and (chunk := sock.recv(1 << 20)):
            got += len(chunk)
        sock.close()
        assert got == int(headers["content-length"])
    assert dropped() == 1
    assert budget_server.metric("rta_http_stalled_response_bytes") == 0
    assert "rta_site.access" not in budget_server.output()  # RTA_ACCESS_LOG=false


# --- access log and JSON logs ---------------------------------------------------------------------


def test_each_request_gets_one_json_access_log_line(server):
    with urllib.request.urlopen(server.url("/rta/v2/sessions?pageSize=1"), timeout=WAIT) as response:
        length = len(response.read())
    deadline = time.monotonic() + WAIT
    while not (found := [e for e in log_lines(server) if e.get("path") == "/rta/v2/sessions?pageSize=1"]):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.1)
    (entry,) = found
    assert entry["logger"] == "rta_site.access" and entry["level"] == "INFO"
    assert (entry["method"], entry["status"], entry["bytes"]) == ("GET", 200, length)
    assert entry["duration_ms"] >= 0 and entry["client"].startswith("127.0.0.1:")
    assert entry["time"].endswith("+00:00")


# --- #11 answers that say what was wrong ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/health", "/metrics"])
@pytest.mark.parametrize("method", ["TRACE", "POST", "DELETE"])
def test_unsupported_methods_on_service_endpoints_are_405_json(client, db, path, method):
    response = client.generic(method, path)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert method in response.json()["error"]


def test_data_endpoints_honour_accept(client, db):
    from tests.factories import make_session

    make_session("accepting")
    for path in ("/rta/v2/sessions/accepting/data/periodic/1", "/rta/v2/sessions/accepting/data/events"):
        response = client.get(path, HTTP_ACCEPT="application/json")
        assert response.status_code == 406
        assert "application/vnd.mat.protobuf+chunked" in response.json()["error"]
        for accept in ("application/vnd.mat.protobuf+chunked", "*/*", "application/*;q=0.5, application/json"):
            assert client.get(path, HTTP_ACCEPT=accept).status_code == 200


def test_an_unknown_data_kind_is_named(client, db):
    from tests.factories import make_session

    make_session("kinds")
    response = client.get("/rta/v2/sessions/kinds/data/foo/0-")
    assert response.status_code == 404
    assert response.json()["error"].startswith("unknown data kind 'foo'")
    assert "no channels" in client.get("/rta/v2/sessions/kinds/data/events/0-").json()["error"]
    assert "{channels}" in client.get("/rta/v2/sessions/kinds/data/periodic").json()["error"]
    make_session("odd/data/foo/0-")  # identities may contain "/": such a session is still served
    assert client.get("/rta/v2/sessions/odd/data/foo/0-").json()["identity"] == "odd/data/foo/0-"


def test_the_openapi_document_describes_arrays_as_arrays(client, db):
    schema = client.get("/rta/v2/schema", HTTP_ACCEPT="application/json").json()

    def answer(path):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        return content

    for path in (
        "/rta/v2/session-folders/",
        "/rta/v2/session-folders/{parent}",
        "/rta/v2/session-metamodel/properties",
    ):
        assert answer(path)["type"] == "array", path


# --- metrics of the data path ---------------------------------------------------------------------


def test_metrics_report_the_data_path(client, db):
    from prometheus_client import REGISTRY
    from rta.model import data_pb2

    from data_app.store.writer import ChunkWriter
    from tests.factories import make_session

    def value(name):
        return REGISTRY.get_sample_value(name) or 0.0

    bytes_before, chunks_before = value("rta_store_written_bytes_total"), value("rta_store_written_chunks_total")
    flushes_before = value("rta_store_flush_duration_seconds_count")
    make_session("measured")
    writer = ChunkWriter("measured")
    writer.add(
        "periodic",
        data_pb2.PeriodicData(channel_id=1, start_timestamp=0, interval=10**6, samples=4, buffer=b"12345678"),
    )
    writer.flush()
    assert value("rta_store_written_chunks_total") == chunks_before + 1
    assert value("rta_store_written_bytes_total") > bytes_before
    assert value("rta_store_flush_duration_seconds_count") == flushes_before + 1
    text = client.get("/metrics").content.decode()
    for name in (
        "rta_websocket_clients",
        "rta_live_buffer_lag_seconds",
        "rta_ingest_lag_seconds",
        "rta_ingest_committed_offset",
        "rta_ingest_consumer_lag_messages",
        "rta_store_flush_duration_seconds",
        "rta_http_connections_closed_total",
        "rta_http_stalled_response_bytes",
    ):
        assert f"# TYPE {name} " in text, name
