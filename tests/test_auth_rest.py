"""Bearer tokens on the REST API (rta_site.auth.middleware), against an independent issuer over HTTP.

Every REST interface without a token, with a read token, with a write token and with each kind of bad
token; and a walk over every URL pattern checking each refuses an anonymous call unless it is meant to
stay open.
"""

import json
import re

import pytest
from django.test import RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from rta_core.access import Access
from rta_site.auth import authenticate
from rta_site.auth.middleware import BearerTokenMiddleware
from tests.auth_issuer import AUDIENCE, BAD_TOKEN_NAMES, MALFORMED_HEADERS, Issuer

pytestmark = pytest.mark.django_db

FORMAT = {"feeds": {"": {"parameters": [{"identifier": "vCar:Chassis", "aggregates": "avg|max"}], "frequency": 100}}}

# (method, path, form or JSON body, scope needed)
READS = [
    ("get", "/rta/v2/sessions", None),
    ("post", "/rta/v2/sessions", {"query": "{}"}),
    ("get", "/rta/v2/sessions/absent", None),
    ("get", "/rta/v2/sessions/absent/data-bindings", None),
    ("get", "/rta/v2/session-folders/", None),
    ("get", "/rta/v2/session-folders/x", None),
    ("get", "/rta/v2/session-metamodel", None),
    ("get", "/rta/v2/session-metamodel/properties?query=x", None),
    ("get", "/rta/v2/configs/absent", None),
    ("head", "/rta/v2/configs/absent", None),
    ("get", "/rta/v2/sessions/absent/data/periodic/1", None),
    ("get", "/rta/v2/sessions/absent/data/timestamped/1", None),
    ("get", "/rta/v2/sessions/absent/data/row/1", None),
    ("get", "/rta/v2/sessions/absent/data/events", None),
    ("get", "/rta/v2/schema", None),
    ("get", "/api/dependencies/dataFormat/absent", None),
    ("head", "/api/dependencies/dataFormat/absent", None),
]
WRITES = [
    ("put", "/api/dependencies/dataFormat/9a9627b7bc25", FORMAT),
    ("post", "/api/dependencies/dataFormat", FORMAT),
]
OPEN = ["/", "/health", "/metrics", "/rta/v2/info"]


@pytest.fixture(scope="module")
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture
def auth_on(issuer):
    with override_settings(RTA_AUTH_ENABLED=True, RTA_AUTH_AUTHORITY=issuer.url, RTA_AUTH_AUDIENCE=AUDIENCE):
        yield issuer


def call(client, method, path, body=None, token=None, header=None):
    headers = {}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if header is not None:
        headers["HTTP_AUTHORIZATION"] = header
    if method in ("put",) or (method == "post" and path.startswith("/api/")):
        return getattr(client, method)(path, data=json.dumps(body), content_type="application/json", **headers)
    if method == "post":
        return client.post(path, data=body, **headers)
    return getattr(client, method)(path, **headers)


def assert_json_error(response, status):
    assert response.status_code == status, response.content
    if response.request["REQUEST_METHOD"] != "HEAD":
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str)


# --- auth off: nothing changes -----------------------------------------------------------------------


def test_auth_off_everything_stays_open_and_info_says_so(client):
    assert client.get("/rta/v2/sessions").status_code == 200
    assert client.get("/rta/v2/info").json()["requiresAuthentication"] is False
    assert client.get("/o/.well-known/openid-configuration").status_code == 404  # no embedded authority


# --- auth on ---------------------------------------------------------------------------------------------


def test_info_stays_open_and_requires_authentication(client, auth_on):
    response = client.get("/rta/v2/info")
    assert response.status_code == 200
    assert response.json()["requiresAuthentication"] is True


@pytest.mark.parametrize("path", OPEN)
def test_open_paths_need_no_token(client, auth_on, path):
    assert client.get(path).status_code in (200, 503)  # /health may be 503 without Redis etc.: never 401


def test_admin_keeps_djangos_own_login(client, auth_on):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("method, path, body", READS + WRITES)
def test_without_a_token_every_interface_is_401_with_a_bearer_challenge(client, auth_on, method, path, body):
    response = call(client, method, path, body)
    assert_json_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "error=" not in response["WWW-Authenticate"]


@pytest.mark.parametrize("method, path, body", READS)
def test_a_read_token_reads(client, auth_on, method, path, body):
    response = call(client, method, path, body, token=auth_on.token("rta.read"))
    assert response.status_code not in (401, 403, 500), response.content


@pytest.mark.parametrize("method, path, body", WRITES)
def test_a_read_token_cannot_publish_dependencies(client, auth_on, method, path, body):
    response = call(client, method, path, body, token=auth_on.token("rta.read"))
    assert_json_error(response, 403)
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
    assert "rta.write" in response.json()["error"]


@pytest.mark.parametrize("method, path, body", READS)
def test_a_write_only_token_cannot_read(client, auth_on, method, path, body):
    assert_json_error(call(client, method, path, body, token=auth_on.token("rta.write")), 403)


@pytest.mark.parametrize("method, path, body", WRITES)
def test_a_write_token_publishes(client, auth_on, method, path, body):
    response = call(client, method, path, body, token=auth_on.token("rta.write"))
    assert response.status_code in (200, 201), response.content


def test_a_read_and_write_token_does_both(client, auth_on):
    token = auth_on.token("rta.read rta.write")
    assert call(client, *WRITES[0], token=token).status_code == 201
    assert call(client, "get", "/api/dependencies/dataFormat/9a9627b7bc25", token=token).json() == FORMAT


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
@pytest.mark.parametrize("method, path, body", [READS[0], READS[8], WRITES[0]])
def test_bad_tokens_are_401_invalid_token_never_500(client, auth_on, name, method, path, body):
    token = auth_on.bad_tokens()[name]
    response = call(client, method, path, body, token=token)
    assert_json_error(response, 401)
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert token not in response.content.decode() and token not in response["WWW-Authenticate"]


@pytest.mark.parametrize("header", MALFORMED_HEADERS)
def test_malformed_authorization_headers_are_401(client, auth_on, header):
    response = call(client, "get", "/rta/v2/sessions", header=header)
    assert_json_error(response, 401)


def test_an_unreachable_authority_is_503_not_401(client, issuer):
    from tests.conftest import free_port

    with override_settings(RTA_AUTH_ENABLED=True, RTA_AUTH_AUTHORITY=f"http://127.0.0.1:{free_port()}"):
        assert_json_error(call(client, "get", "/rta/v2/sessions", token=issuer.token()), 503)


def test_views_find_the_callers_access_on_the_request(auth_on):
    seen = []
    middleware = BearerTokenMiddleware(lambda request: seen.append(request.rta_access) or "response")
    factory = RequestFactory()
    with override_settings(RTA_AUTH_FOLDERS_CLAIM="rta_folders"):
        token = auth_on.token("rta.read", rta_folders=["Team A"])
        middleware(factory.get("/rta/v2/sessions", HTTP_AUTHORIZATION=f"Bearer {token}"))
        middleware(factory.get("/health"))
    assert seen == [Access(can_read=True, can_write=False, folders=("Team A",), subject="tester"), Access.NOBODY]


def test_views_get_full_access_with_auth_off():
    seen = []
    BearerTokenMiddleware(lambda request: seen.append(request.rta_access))(RequestFactory().get("/rta/v2/sessions"))
    assert seen == [Access.ANONYMOUS_FULL]


def test_settings_changes_replace_the_validator(auth_on):
    first = authenticate.validator()
    with override_settings(RTA_AUTH_AUDIENCE="other"):
        assert authenticate.validator() is not first
        assert authenticate.validator().audience == "other"


# --- no endpoint left open by accident ---------------------------------------------------------------------

# URL patterns meant to answer without a token (the admin has Django's own login; the embedded
# authority's endpoints are how a token is had, and answer 404 unless it is configured).
OPEN_PATTERNS = re.compile(r"^(|health|metrics|rta/v2/info|admin/.*|o/.*)$")


def _patterns(resolver=None, prefix=""):
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, route)
        elif isinstance(entry, URLPattern):
            yield route


def _groups(text):
    """(start, end, inner) of each top-level parenthesised group of a regular expression."""
    depth, start = 0, None
    for i, char in enumerate(text):
        if char == "\\":
            continue
        if char == "(" and (i == 0 or text[i - 1] != "\\"):
            if depth == 0:
                start = i
            depth += 1
        elif char == ")" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                yield start, i + 1, text[start + 1 : i]


def _sample_path(route):
    """A concrete path the route matches: each parameter a sample value, optional parts left out."""
    path, end = "", 0
    for start, stop, inner in _groups(route):
        path += route[end:start]
        if inner.startswith("?P<"):
            body = inner[inner.index(">") + 1 :]
            words = body.split("|")
            path += words[0] if all(re.fullmatch(r"\w+", w) for w in words) else "x"
        elif not (route[stop : stop + 1] == "?" and inner.startswith("?:")):
            path += inner.removeprefix("?:")
        end = stop + (1 if route[stop : stop + 1] == "?" else 0)
    path += route[end:]
    path = re.sub(r"<(?:\w+:)?\w+>", "x", path)  # path() converters
    path = path.replace("^", "").replace("$", "").replace("/?", "").replace("\\", "")
    return "/" + path


def test_every_url_pattern_refuses_anonymous_calls_unless_meant_to_be_open(client, auth_on):
    routes = sorted(set(_patterns()))
    checked = []
    for route in routes:
        path = _sample_path(route)
        if OPEN_PATTERNS.match(path.lstrip("/")):
            continue
        resolved = resolve(path).route.replace("^", "").rstrip("$")
        assert resolved == route.replace("^", "").rstrip("$"), f"{path} resolves to {resolved}, not {route}"
        for method in ("get", "post", "put", "delete"):
            response = getattr(client, method)(path)
            assert response.status_code == 401, f"{method.upper()} {path} ({route}) answered {response.status_code}"
        checked.append(path)
    # The walk reached the REST API and the dependency service.
    assert "/rta/v2/sessions" in checked and "/api/dependencies/x/x" in checked
    assert any(p.startswith("/rta/v2/sessions/x/data/") for p in checked)
