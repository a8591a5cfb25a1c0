"""Readiness checks: the database, the data store and, when configured, Redis and the data services.

A data service (``RTA_DATA_SERVICES``) is checked at its root path, as the
gateway's own health check does (spec §13): 200 within
RTA_DATA_SERVICE_HEALTH_TIMEOUT, all of them at once. A failure names the
source only (its URL is private), and nothing is remembered: the next check
is 200 again as soon as the service answers.
"""

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection

from data_app.sources import registry


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_data_store():
    from data_app.store import objects

    if objects.enabled():  # RTA_STORE=s3: the bucket answers (its name and endpoint are not echoed)
        objects.store().check_bucket()
        return
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


class DataServiceDown(Exception):
    pass


def check_data_service(url, timeout):
    import httpx

    try:
        response = httpx.get(url + "/", timeout=timeout, follow_redirects=False, trust_env=False)
    except httpx.TimeoutException:
        raise DataServiceDown(f"no answer within {timeout:g} s") from None
    except httpx.HTTPError:
        raise DataServiceDown("unreachable") from None
    if response.status_code != 200:
        raise DataServiceDown(f"answered HTTP {response.status_code}")


def _data_service_checks():
    services = settings.RTA_DATA_SERVICES
    if not services:
        return
    timeout = settings.RTA_DATA_SERVICE_HEALTH_TIMEOUT
    with ThreadPoolExecutor(max_workers=min(len(services), 8)) as pool:  # concurrently: a timeout each, not a sum
        answers = {source: pool.submit(check_data_service, url, timeout) for source, url in services.items()}
    for source, answer in answers.items():
        yield f"data service {source}", answer.result


def checks():
    yield "database", check_database
    yield "data store", check_data_store
    if settings.RTA_REDIS_URL:
        yield "redis", check_redis
    yield from _data_service_checks()
    yield from registry.checks()  # each built-in data source's store (an InfluxDB, a database, a folder)


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
