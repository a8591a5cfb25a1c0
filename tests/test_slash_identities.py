"""Session identities containing "/" reach every REST route, written plainly or percent-encoded."""

import struct

import pytest
from rta.model import data_pb2

from data_app.services.sink import DataSink
from rta_kit import wire
from sessions_app.services.updates import create_or_update_session

IDENTITY = "team/2026/run-1"
T0 = 1_700_000_000 * 1_000_000_000

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stored(settings, tmp_path):
    settings.RTA_DATA_PATH = str(tmp_path)
    settings.RTA_EXPOSE_DATA_BINDINGS = True
    create_or_update_session(IDENTITY, [("set_state", 4), ("set_identifier", "run 1")])
    sink = DataSink(IDENTITY)
    sink.add(
        "periodic",
        data_pb2.PeriodicData(
            channel_id=5, start_timestamp=T0, interval=10**6, samples=3, buffer=struct.pack("<3h", 1, 2, 3)
        ),
    )
    sink.add("events", data_pb2.Event(event_definition_id=9, timestamp=T0, status_text="go"))
    sink.flush()


@pytest.mark.parametrize("written", [IDENTITY, IDENTITY.replace("/", "%2F")])
def test_every_route_takes_the_identity(client, stored, written):
    detail = client.get(f"/rta/v2/sessions/{written}")
    assert detail.status_code == 200, detail.content
    assert detail.json()["identity"] == IDENTITY

    data = client.get(f"/rta/v2/sessions/{written}/data/periodic/5")
    assert data.status_code == 200, data.content
    (chunk,) = wire.read_chunks(b"".join(data.streaming_content))
    assert chunk.decode("periodic").periodic_data[0].buffer == struct.pack("<3h", 1, 2, 3)

    events = client.get(f"/rta/v2/sessions/{written}/data/events")
    assert events.status_code == 200
    (chunk,) = wire.read_chunks(b"".join(events.streaming_content))
    assert chunk.decode("events").events[0].status_text == "go"

    assert client.get(f"/rta/v2/sessions/{written}/data-bindings").status_code == 200


def test_a_prefix_of_the_identity_is_not_the_session(client, stored):
    assert client.get("/rta/v2/sessions/team/2026").status_code == 404
    assert client.get("/rta/v2/sessions/team/2026/data/periodic/5").status_code == 404
    bad = client.get(f"/rta/v2/sessions/{IDENTITY}/data/periodic/zz")
    assert bad.status_code == 400 and "error" in bad.json()
