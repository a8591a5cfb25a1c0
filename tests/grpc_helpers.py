"""An in-process gRPC server (``build_server`` on a free loopback port) and a channel to it.

Import the fixtures into a test module::

    from tests.grpc_helpers import grpc_channel, grpc_server  # noqa: F401

The server lives for the module; its worker threads open their own database
connections, so tests that touch the database need
``@pytest.mark.django_db(transaction=True)`` (data committed by the test is
visible to the server and the server's writes to the test). When the module
ends the server stops and the connections its threads opened are closed, so
the test database can be dropped.
"""

from contextlib import contextmanager, nullcontext

import grpc
import pytest
from django.db import connection
from django.test import override_settings


def _backend_pids():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return {row[0] for row in cursor.fetchall()}


def _close_server_connections(before):
    """End the database sessions the server's threads opened (they cannot be closed from here)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s))",
            [sorted(before)],
        )
    # Some of those sessions were idle in this process's pool: start later tests on a fresh one.
    if connection.pool is not None:
        connection.close_pool()


@contextmanager
def running_server(django_db_blocker, services=None):
    """Start every registered service (or ``services``) on a free loopback port; stop and clean up after."""
    from rta_site.grpc_server import build_server

    with django_db_blocker.unblock():
        before = _backend_pids() if connection.vendor == "postgresql" else set()
    overrides = override_settings(RTA_GRPC_SERVICES=services) if services is not None else nullcontext()
    with overrides:
        server, port = build_server(port=0, bind="127.0.0.1", max_workers=8)
    server.start()
    try:
        yield server, port
    finally:
        server.stop(grace=None).wait()
        with django_db_blocker.unblock():
            _close_server_connections(before)


@pytest.fixture(scope="module")
def grpc_server(django_db_setup, django_db_blocker):
    """``(server, port)``: every registered service on 127.0.0.1 at a free port, started."""
    with running_server(django_db_blocker) as running:
        yield running


@pytest.fixture(scope="module")
def grpc_channel(grpc_server):
    """An insecure channel to the in-process server, ready to use."""
    _, port = grpc_server
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield channel
    finally:
        channel.close()
