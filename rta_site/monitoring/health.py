"""Readiness checks: the database, the data store and, when configured, Redis."""

import os
import uuid

from django.conf import settings
from django.db import connection


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_data_store():
    path = settings.RTA_DATA_PATH
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".health-{uuid.uuid4().hex}"
    probe.write_bytes(b"ok")
    os.unlink(probe)


def check_redis():
    import redis

    client = redis.Redis.from_url(settings.RTA_REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def checks():
    yield "database", check_database
    yield "data store", check_data_store
    if settings.RTA_REDIS_URL:
        yield "redis", check_redis


def run_checks():
    """``[(name, error or None)]`` for every configured dependency."""
    results = []
    for name, check in checks():
        try:
            check()
            results.append((name, None))
        except Exception as exc:  # a health check reports any failure, whatever it is
            results.append((name, f"{type(exc).__name__}: {exc}"))
    return results
