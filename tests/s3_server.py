"""An S3 server on loopback for the object-storage tests: moto's standalone server in a subprocess.

One server per test session (per xdist worker), on a free port; each test that
asks for ``s3_store`` gets a bucket of its own and ``RTA_STORE=s3`` pointing at
it. Under CI=true a missing moto fails the test instead of skipping it.
"""

import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.conftest import IN_CI, free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto(log_path):
    """(process, endpoint URL) of a fresh moto server; the caller stops it."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"the object-storage tests need moto's server (requirements-dev.txt): {exc}")
        pytest.skip("needs moto's server (pip install -r requirements-dev.txt)")
    port = free_port()
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **CREDENTIALS},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # wait for it to answer (an event: its first HTTP answer), bounded
        if process.poll() is not None:
            pytest.fail(f"moto's server exited with {process.returncode}; see {log_path}")
        try:
            httpx.get(url + "/moto-api/", timeout=1, trust_env=False)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto's server did not answer within 60 s; see {log_path}")
            time.sleep(0.05)
    return process, url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """The endpoint URL of this session's moto server."""
    process, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield url
    process.terminate()
    process.wait(10)


def s3_client(endpoint):
    import boto3

    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=endpoint)


@pytest.fixture
def s3_store(s3_endpoint, settings, monkeypatch):
    """``RTA_STORE=s3`` on a new bucket of the session's moto server; yields the store's settings as a dict."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = f"rta-test-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    settings.RTA_STORE = "s3"
    settings.RTA_S3_BUCKET = bucket
    settings.RTA_S3_PREFIX = "store/"
    settings.RTA_S3_ENDPOINT_URL = s3_endpoint
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "data_app.store.objects.configs.ConfigBlobStorage", "OPTIONS": {}},
    }
    yield {
        "RTA_STORE": "s3",
        "RTA_S3_BUCKET": bucket,
        "RTA_S3_PREFIX": "store/",
        "RTA_S3_ENDPOINT_URL": s3_endpoint,
        **CREDENTIALS,
    }


def bucket_keys(endpoint, bucket, prefix=""):
    """Every key in ``bucket`` under ``prefix``."""
    client = s3_client(endpoint)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [entry["Key"] for entry in page.get("Contents", ())]
    return keys


@pytest.fixture(params=["file", "s3"])
def store_kind(request):
    """Runs a test on both chunk stores: ``file`` (segment files) and ``s3`` (moto's server)."""
    if request.param == "s3":
        request.getfixturevalue("s3_store")
    return request.param
