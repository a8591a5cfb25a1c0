"""The data-service interface (spec §13): ``/rta/v2/data/{dataIdentity}/...`` serving stored chunks as stored.

Off unless RTA_EXPOSE_DATA_SERVICE; the identity is one percent-encoded path
segment (``/``, quotes, spaces, ``=`` and ``%`` inside); bounds are data
time; bad input is a JSON 400/404. Through a real server (daphne's decoding)
it is exercised by ``tests/test_gateway.py``.
"""

from urllib.parse import quote

import pytest

from rta_kit import wire
from rta_site.auth.authenticate import READ
from rta_site.auth.middleware import required_scope
from tests.test_data_bindings import KINDS, T0, S, as_stored, stored_chunks, write_identity

pytestmark = pytest.mark.django_db

AWKWARD = ['car/a b "1"=%41', "..", "plain", " lead/trail ", "slash/", "pct%2F%25", "ünï/cødé"]


def path(identity, kind, channels="0-"):
    segment = quote(identity, safe="")
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return f"/rta/v2/data/{segment}/{kind}" + ("" if kind == "events" else f"/{channels}")


def fetch(client, identity, kind, channels="0-", **params):
    response = client.get(path(identity, kind, channels), params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == wire.MEDIA_TYPE
    return wire.read_chunks(b"".join(response.streaming_content))


@pytest.fixture
def exposed(settings):
    settings.RTA_EXPOSE_DATA_SERVICE = True


def test_the_interface_is_off_by_default(client, settings):
    write_identity("hidden", seconds=2)
    assert settings.RTA_EXPOSE_DATA_SERVICE is False
    for url in (path("hidden", "periodic"), path("hidden", "events"), "/rta/v2/data/hidden/nonsense"):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"error": "no such resource"}  # neither the identity nor the interface named


@pytest.mark.parametrize("identity", AWKWARD)
def test_awkward_identities_are_served_as_stored(client, exposed, identity):
    write_identity(identity, seconds=4)
    for kind in KINDS:
        assert as_stored(fetch(client, identity, kind)) == stored_chunks(identity, kind), kind


def test_bounds_are_data_time_and_channels_filter(client, exposed):
    write_identity("bounded", seconds=20)
    chunks = fetch(client, "bounded", "periodic", "2", start=T0 + 5 * S, end=T0 + 6 * S)
    assert chunks and all(c.channel_ids == [2] and c.start <= T0 + 6 * S and c.end >= T0 + 5 * S for c in chunks)
    assert as_stored(fetch(client, "bounded", "periodic", "1-3")) == stored_chunks("bounded", "periodic")
    assert fetch(client, "bounded", "periodic", "1", start=T0 + 100 * S) == []
    assert fetch(client, "never-written", "events") == []  # an identity without data: an empty stream


def test_a_session_of_the_same_name_changes_nothing(client, exposed):
    """The interface serves data identities: a session's bindings never apply to it."""
    from sessions_app.services.updates import create_or_update_session

    write_identity("car-a", seconds=2)
    write_identity("car-b", base=100, seconds=2)
    create_or_update_session("car-a", [("set_data_bindings", [{"identity": "car-b", "session_time_offset": S}])])
    for kind in KINDS:
        assert as_stored(fetch(client, "car-a", kind)) == stored_chunks("car-a", kind), kind


@pytest.mark.parametrize(
    "url, status, words",
    [
        ("/rta/v2/data/x/periodic/zz", 400, "malformed channel expression"),
        ("/rta/v2/data/x/periodic/1?start=soon", 400, "start must be an integer"),
        ("/rta/v2/data/x/periodic/1?start=5&end=4", 400, "after end"),
        ("/rta/v2/data/x%00y/events", 400, "NUL"),
        ("/rta/v2/data/x/events/1", 404, "no channels"),
        ("/rta/v2/data/x/periodic", 404, "{channels}"),
        ("/rta/v2/data/secret%2Fname/pictures/1", 404, "unknown data kind 'pictures'"),
    ],
)
def test_bad_requests_are_json_errors(client, exposed, url, status, words):
    response = client.get(url)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert "secret" not in response.json()["error"]


def test_other_methods_and_accept(client, exposed):
    write_identity("m", seconds=1)
    response = client.post(path("m", "periodic"))
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert client.get(path("m", "events"), HTTP_ACCEPT="application/json").status_code == 406
    head = client.head(path("m", "periodic"))
    assert head.status_code == 200 and int(head["Content-Length"]) > 0


def test_the_routes_need_the_read_scope():
    for url in ("/rta/v2/data/x/events", "/rta/v2/data/a%2Fb/periodic/0-"):
        assert required_scope(url, "GET") == READ
