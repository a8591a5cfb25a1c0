"""REST HEAD/GET /rta/v2/configs/{identifier}: negotiation, ETags, caching, streaming, errors."""

import hashlib
import json
from urllib.parse import quote

import pytest
from django.test import RequestFactory

from config_app.api.negotiation import accepts
from config_app.api.views import ConfigView
from config_app.services import store
from tests.test_configs_store import HOSTILE_IDENTIFIERS, assert_all_files_under_store
from tests.test_configs_validation import demo_config

JSON = "application/vnd.mat.config+json"
FFC = "application/vnd.mat.config+ffc"
DEMO = json.dumps(demo_config()).encode()
pytestmark = pytest.mark.django_db


def url(identifier):
    return "/rta/v2/configs/" + quote(identifier, safe="").replace(".", "%2E")


def body(response):
    assert response.streaming
    return b"".join(response.streaming_content)


@pytest.fixture
def published():
    store.put_config("demo", JSON, DEMO)
    store.put_config("binary", FFC, b"\x00FFC\xff" * 1000)


def test_get_streams_the_stored_bytes(api, published):
    response = api.get(url("demo"))
    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert response["Content-Length"] == str(len(DEMO))
    assert response["ETag"] == f'"{hashlib.sha256(DEMO).hexdigest()}"'
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Accept" in response["Vary"]
    assert "Content-Disposition" not in response
    assert body(response) == DEMO
    response = api.get(url("binary"), HTTP_ACCEPT=FFC)
    assert (response.status_code, response["Content-Type"], body(response)) == (200, FFC, b"\x00FFC\xff" * 1000)


def test_head(api, published):
    response = api.head(url("demo"))
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(DEMO))
    assert response["Content-Type"] == JSON
    assert response["ETag"] == f'"{hashlib.sha256(DEMO).hexdigest()}"'
    assert api.head(url("missing")).status_code == 404
    # No body at all from the view (not only stripped by the test client).
    view = ConfigView.as_view()
    factory = RequestFactory()
    assert view(factory.head(url("demo")), identifier="demo").content == b""
    missing = view(factory.head(url("missing")), identifier="missing")
    assert (missing.status_code, missing.content) == (404, b"")


def test_missing_is_404_json(api, published):
    response = api.get(url("nope"))
    assert response.status_code == 404
    assert response.json() == {"error": "config 'nope' not found"}


@pytest.mark.parametrize(
    "accept, status",
    [
        (None, 200),
        ("", 200),
        (JSON, 200),
        (f"{FFC}, {JSON}", 200),
        ("application/*", 200),
        ("*/*", 200),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200),
        (f"{JSON};q=0.5, */*;q=0", 200),
        (FFC, 406),
        ("application/json", 406),
        ("text/*", 406),
        (f"{JSON};q=0", 406),
        (f"*/*, {JSON};q=0", 406),
    ],
)
def test_accept_negotiation(api, published, accept, status):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = api.get(url("demo"), **headers)
    assert response.status_code == status
    if status == 406:
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"].startswith(f"config 'demo' is available as {JSON} only")
        assert api.head(url("demo"), **headers).status_code == 406


def test_accepts_helper():
    assert accepts("APPLICATION/VND.MAT.CONFIG+JSON", JSON)
    assert accepts("application/*;q=0.1", JSON)
    assert not accepts("application/*;q=0, text/plain", JSON)
    assert accepts("application/*;q=0, application/vnd.mat.config+json", JSON)
    assert accepts("*/*;q=bogus", JSON)


def test_etag_and_if_none_match(api, published):
    etag = api.get(url("demo"))["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = api.get(url("demo"), HTTP_IF_NONE_MATCH=header)
        assert response.status_code == 304, header
        assert response["ETag"] == etag and response["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.content == b""
    assert api.head(url("demo"), HTTP_IF_NONE_MATCH=etag).status_code == 304
    response = api.get(url("demo"), HTTP_IF_NONE_MATCH='"other"')
    assert response.status_code == 200 and body(response) == DEMO


def test_other_methods_are_not_allowed(api, published):
    response = api.post(url("demo"), data=DEMO, content_type=JSON)
    assert response.status_code == 405
    assert "error" in response.json()
    assert api.delete(url("demo")).status_code == 405
    assert store.has_config("demo")


def test_bad_identifiers(api):
    response = api.get(url("x" * 10_000))
    assert response.status_code == 400
    assert "the limit is 4096" in response.json()["error"]
    assert api.get("/rta/v2/configs/").status_code == 404


def test_hostile_identifiers_are_served_back(api):
    for n, identifier in enumerate(HOSTILE_IDENTIFIERS):
        store.put_config(identifier, FFC, f"config {n}".encode())
    for n, identifier in enumerate(HOSTILE_IDENTIFIERS):
        response = api.get(url(identifier))
        assert response.status_code == 200, identifier
        assert body(response) == f"config {n}".encode()
    # Slashes may also arrive unencoded: the route takes the rest of the path.
    assert body(api.get("/rta/v2/configs/a/b/c")) == f"config {HOSTILE_IDENTIFIERS.index('a/b/c')}".encode()
    assert_all_files_under_store()


def test_large_config_is_streamed(api):
    data = bytes(range(256)) * (4 * 4096 + 7)  # ~4 MiB
    store.put_config_stream("large", FFC, (data[i : i + 65536] for i in range(0, len(data), 65536)))
    response = api.get(url("large"))
    chunks = list(response.streaming_content)
    assert response["Content-Length"] == str(len(data))
    assert len(chunks) > 1 and max(map(len, chunks)) <= 256 * 1024
    assert b"".join(chunks) == data


def test_config_endpoint_is_in_the_openapi_document(api):
    schema = api.get("/rta/v2/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content.decode()
    assert "/rta/v2/configs/{identifier}" in schema
    assert "get-config" in schema and JSON in schema and FFC in schema
