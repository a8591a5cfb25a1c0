"""`manage.py serve` end to end: one process, HTTP and gRPC, stopped cleanly by Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for_http(url, process, timeout=90):  # a start on a loaded machine can be slow
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture
def embedded_env(tmp_path):
    """Environment for a server on the embedded defaults (SQLite, no Redis) under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    env["RTA_DATABASE_URL"] = f"sqlite:///{tmp_path / 'rta.sqlite3'}"
    env["RTA_DATA_PATH"] = str(tmp_path / "data")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return env


def test_serve_runs_http_and_grpc_in_one_process_and_stops_on_ctrl_c(embedded_env):
    http_port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve",
            "--bind",
            "127.0.0.1",
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
        ],
        cwd=ROOT,
        env=embedded_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status, body = wait_for_http(f"http://127.0.0.1:{http_port}/health", process)
        assert (status, body) == (200, b"Healthy")
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/rta/v2/sessions") as response:
            assert json.loads(response.read()) == {"sessions": []}
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.django_db(transaction=True)
def test_rungrpc_serves_one_port_from_several_processes(postgres, tmp_path):
    """RTA_GRPC_PROCESSES: the kernel spreads connections over processes sharing the port."""
    from django.db import connection
    from rta.toolkit.api import session_service_pb2 as pb
    from rta.toolkit.api import session_service_pb2_grpc as pb_grpc

    from sessions_app.models import Session

    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    env["RTA_DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["RTA_DATA_PATH"] = str(tmp_path / "data")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rungrpc", "--bind", "127.0.0.1", "--port", str(port), "--processes", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while "in 2 processes" not in process.stdout.readline():
            assert process.poll() is None and time.monotonic() < deadline, "rungrpc did not start"
        # Each channel is its own TCP connection: the kernel spreads them over the processes once
        # the second one (started after the first reports, so maybe later on a loaded machine)
        # listens too. Batches of 24 until both have served, for up to 60 s.
        calls, servers, deadline = 0, set(), time.monotonic() + 60
        while len(servers) < 2 and time.monotonic() < deadline:
            for _ in range(24):
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    pb_grpc.SessionStoreStub(channel).CreateOrUpdateSession(
                        pb.CreateOrUpdateSessionRequest(
                            identity=f"multi-{calls}",
                            create_if_not_exists=pb.CreateOrUpdateSessionRequest.CreateIfNotExists(),
                        ),
                        timeout=20,
                    )
                calls += 1
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT DISTINCT application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'rta:%%' "
                    "AND application_name <> %s",
                    [f"rta:{os.getpid()}"],
                )
                servers = {row[0] for row in cursor.fetchall()}
        assert Session.objects.filter(identity__startswith="multi-").count() == calls
        assert len(servers) == 2, servers
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        # The extra process stopped with its parent: no server connection is left behind.
        deadline = time.monotonic() + 60
        while _connections_of(servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _connections_of(servers) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _connections_of(application_names):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = ANY(%s)",
            [sorted(application_names)],
        )
        return cursor.fetchone()[0]
