"""A streamed data response is held back while its client does not read (rta_site.http_server).

A real ``manage.py serve`` on the embedded defaults serves ~96 MB of stored
chunks to a client that reads 1 MB and then stops: the server must not take
the rest into memory (daphne alone writes every block to Twisted at once).
"""

import subprocess
import sys
import time

from tests.conftest import free_port
from tests.test_serve import ROOT, embedded_env, wait_for_http  # noqa: F401 (fixture)

IDENTITY = "flow-control"
SAMPLES = 48_000_000  # int16 noise: ~96 MB stored (it does not compress)

WRITE = f"""
import numpy as np
from rta.model import data_pb2
from data_app.store.writer import ChunkWriter
from sessions_app.services.updates import create_or_update_session
create_or_update_session({IDENTITY!r}, [("set_state", 4)])
noise = np.random.default_rng(1).integers(-32768, 32767, size=1_000_000, dtype=np.int16).tobytes()
writer = ChunkWriter({IDENTITY!r})
start = 1_700_000_000 * 10**9
for i in range({SAMPLES} // 500_000):
    writer.add("periodic", data_pb2.PeriodicData(channel_id=1, start_timestamp=start + i * 500_000 * 10**6,
                                                 interval=10**6, samples=500_000,
                                                 buffer=noise[(i % 2) * 1_000_000:][:1_000_000]))
writer.flush()
"""


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_client_that_stops_reading_holds_the_response_back(embedded_env):
    subprocess.run([sys.executable, "manage.py", "shell", "-c", WRITE], cwd=ROOT, env=embedded_env, check=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", "127.0.0.1", "--http-port", str(port), "--no-grpc"],
        cwd=ROOT,
        env=embedded_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server)
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            sock.sendall(
                f"GET /rta/v2/sessions/{IDENTITY}/data/periodic/1 HTTP/1.1\r\nHost: x\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, _, body = received.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            assert length > 90_000_000
            got = len(body)
            while got < 1_000_000:
                got += len(sock.recv(65536))
            before = rss_bytes(server.pid)
            time.sleep(2)  # the client reads nothing meanwhile
            held = rss_bytes(server.pid) - before
            assert held < 32 * 1024 * 1024, f"the server took {held / 1e6:.0f} MB of a response nobody read"
            while chunk := sock.recv(1 << 20):
                got += len(chunk)
        assert got == length
        # A client that goes away mid-response (its send held back) does not hang the server.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"GET /rta/v2/sessions/{IDENTITY}/data/periodic/1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(65536)
        status, body = wait_for_http(f"http://127.0.0.1:{port}/health", server)
        assert (status, body) == (200, b"Healthy")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                f"HEAD /rta/v2/sessions/{IDENTITY}/data/periodic/1 HTTP/1.1\r\nHost: x\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        server.kill()
        server.wait()
