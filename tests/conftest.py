"""Test fixtures shared by every suite.

The suite runs against the database RTA_DATABASE_URL names (PostgreSQL under
`make test` and CI) and the Redis RTA_TEST_REDIS_URL names. Under CI=true a
missing service fails the run instead of skipping tests.
"""

import os
import socket

import pytest
from django.db import connection

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config):
    url = os.environ.get("RTA_DATABASE_URL", "")
    embedded_run = config.getoption("-m") == "embedded"
    if IN_CI and not embedded_run and not url.startswith(("postgres://", "postgresql://")):
        raise pytest.UsageError("CI=true: RTA_DATABASE_URL must name the PostgreSQL server the suite runs against")


@pytest.fixture(autouse=True)
def _data_path(tmp_path, settings):
    """Each test stores files under its own temporary RTA_DATA_PATH."""
    settings.RTA_DATA_PATH = tmp_path / "data"
    settings.RTA_DATA_PATH.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(settings.RTA_DATA_PATH)}},
    }


@pytest.fixture
def postgres(db):
    """Marks a test that must run on PostgreSQL (fails rather than skips under CI)."""
    if connection.vendor != "postgresql":
        if IN_CI:
            pytest.fail("this test needs PostgreSQL (set RTA_DATABASE_URL)")
        pytest.skip("needs PostgreSQL")


def _worker_redis_url(url):
    """Each pytest-xdist worker gets its own logical database (base + worker number)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base + int(worker[2:])) % 16}"))


def wait_until_serving(process, url, log, deadline_seconds=60, ssl_context=None, any_status=False):
    """Poll ``url`` until the server ``process`` answers 200 (any HTTP status with ``any_status``).

    Fails with the server's output (``log``: a path) if it exits first or does not answer in time.
    """
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + deadline_seconds
    while True:
        assert process.poll() is None, f"the server exited: {log.read_text(errors='replace')}"
        try:
            with urllib.request.urlopen(url, timeout=2, context=ssl_context) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the server did not start: {log.read_text(errors='replace')}"
        time.sleep(0.2)


def free_port():
    """A loopback TCP port free now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable_redis_url():
    """This worker's Redis URL, flushed; skips (fails under CI=true) when Redis is missing."""
    import redis

    url = _worker_redis_url(os.environ.get("RTA_TEST_REDIS_URL", ""))
    if not url:
        if IN_CI:
            pytest.fail("this test needs Redis (set RTA_TEST_REDIS_URL)")
        pytest.skip("needs Redis (set RTA_TEST_REDIS_URL)")
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at {url} is not reachable: {exc}")
        pytest.skip(f"Redis at {url} is not reachable")
    finally:
        client.close()
    return url


def flush_redis(url):
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()


@pytest.fixture
def redis_url():
    """A reachable Redis URL (its logical database is flushed before and after each test)."""
    url = reachable_redis_url()
    yield url
    flush_redis(url)


@pytest.fixture
def api(client):
    """Django's test client, speaking to the REST API."""
    return client


# Object storage (issue 18): moto's S3 server and the fixtures that point the store at it.
from tests.s3_server import s3_endpoint, s3_store, store_kind  # noqa: E402, F401
