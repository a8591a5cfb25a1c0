"""``manage.py load_demo``: demo sessions whose data reads back through REST, loaded idempotently."""

import io
import json
import struct
import sys
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command

from config_app.services import store as config_store
from config_app.services.validation import validate_config
from data_app import demo
from data_app.admin.summary import labels_from_document
from data_app.demo import car
from data_app.demo import config as demo_config
from data_app.models import Chunk
from rta_kit import wire
from sessions_app.models import Session
from sessions_app.services.updates import create_or_update_session

NOW = datetime(2024, 5, 20, 16, 0, tzinfo=UTC)


def run_command(*args, **options):
    out = io.StringIO()
    call_command("load_demo", *args, stdout=out, **options)
    return out.getvalue()


def rest_items(api, identity, kind, channels=None):
    url = f"/rta/v2/sessions/{identity}/data/{kind}" + (f"/{channels}" if channels else "")
    response = api.get(url)
    assert response.status_code == 200, response.content
    chunks = wire.read_chunks(b"".join(response.streaming_content))
    field = {"periodic": "periodic_data", "timestamped": "timestamped_data", "events": "events"}[kind]
    return [item for c in chunks for item in getattr(c.decode(kind), field)]


def periodic_values(items, channel):
    values = []
    for item in items:
        if item.channel_id == channel:
            values += struct.unpack(f"<{item.samples}h", item.buffer)
    return values


@pytest.mark.django_db
def test_demo_sessions_read_back_through_rest(api):
    result = demo.load_demo(sessions=1, now=NOW)
    identity = demo.session_identity(0)
    assert [s.status for s in result.sessions] == ["loaded"]
    run = car.simulate(600.0, seed=1)  # the loader's own simulation, recomputed independently

    # The session: in the demo folder, bound to the published config, laps as markers.
    listed = api.get("/rta/v2/sessions", {"folder": demo.FOLDER}).json()
    assert [s["identity"] for s in listed["sessions"]] == [identity]
    session = api.get(f"/rta/v2/sessions/{identity}").json()
    assert session["configBindings"] == [{"identifier": result.config_identifier, "channelOffset": 0}]
    laps = [m for m in session["markers"] if m["category"] == "Laps"]
    assert [m["label"] for m in laps] == ["Out lap"] + [f"Lap {n}" for n in range(1, len(laps) - 1)] + ["In lap"]
    assert len(laps) == len(run.laps) and len(laps) >= 4
    assert session["details"]["Driver"] and session["details"]["BestLap"] == car.lap_time_text(run.best_lap.time)
    start, end = session["timeRange"]["startTime"], session["timeRange"]["endTime"]
    assert end - start == (60_000 - 1) * 10_000_000  # 10 minutes at 100 Hz

    # Periodic int16 data: 60,000 samples on each of the 8 channels, 100 Hz, within the time range.
    items = rest_items(api, identity, "periodic", "0-7")
    for channel in range(8):
        assert len(periodic_values(items, channel)) == 60_000, channel
    assert {i.interval for i in items} == {10_000_000}
    assert min(i.start_timestamp for i in items) == start
    assert max(i.start_timestamp + (i.samples - 1) * i.interval for i in items) == end
    speeds = [raw * 0.1 for raw in periodic_values(items, 0)]  # vCar, 0.1 km/h per count
    assert 250 < max(speeds) < 340 and min(speeds) == 0

    # Timestamped f64 data, as many samples as the simulation made, and the events.
    stamped = rest_items(api, identity, "timestamped", "8-A")
    for name in ("TOil", "TWater", "mFuel"):
        channel = demo_config.CHANNEL_BY_NAME[name].id
        count = sum(len(i.timestamp_deltas) for i in stamped if i.channel_id == channel)
        assert count == len(run.timestamped[name][0]), name
    events = rest_items(api, identity, "events")
    assert len(events) == len(run.events)
    assert sum(1 for e in events if e.event_definition_id == demo_config.EVENTS["lap"][0]) == len(laps)

    # The config is a valid RTA config naming every channel ATLAS will ask for.
    config, data = config_store.read_config(result.config_identifier)
    document = json.loads(data)
    validate_config(document)
    labels = labels_from_document(document)
    assert [labels[c].name for c in range(11)] == [c.name for c in demo_config.CHANNELS]
    assert labels[0].unit == "km/h" and labels[0].linear_conversion() == (0.1, 0.0)


class _OneMinute(datetime):
    """``datetime`` whose ``now`` stays in one minute: the demo's start times are minute-aligned "now"."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 11, 21, 9, 0, 30, tzinfo=tz)


@pytest.mark.django_db
def test_load_again_skips_replace_reloads_remove_deletes(api, monkeypatch):
    # Loads in different minutes would start the sessions at different times, so chunk windows
    # could differ between loads whatever the loader does.
    monkeypatch.setattr("data_app.demo.loader.datetime", _OneMinute)
    first = run_command("--sessions", "1", "--minutes", "3")
    identity = demo.session_identity(0)
    assert "1 loaded" in first and "published." in first
    chunks = sorted(
        Chunk.objects.filter(identity=identity).values_list("kind", "channel", "window_start", "sample_count")
    )

    again = run_command("--sessions", "1", "--minutes", "3")
    assert "already loaded: nothing to do" in again and "already published" in again
    assert (
        sorted(Chunk.objects.filter(identity=identity).values_list("kind", "channel", "window_start", "sample_count"))
        == chunks
    )

    replaced = run_command("--sessions", "1", "--minutes", "3", "--replace")
    assert "1 replaced" in replaced
    counts = sorted(
        Chunk.objects.filter(identity=identity).values_list("kind", "channel", "window_start", "sample_count")
    )
    assert counts == chunks  # reloaded, never merged into the old data
    assert len(periodic_values(rest_items(api, identity, "periodic", "0"), 0)) == 3 * 60 * 100

    # Loading more keeps the first and adds the second.
    more = run_command("--sessions", "2", "--minutes", "3")
    assert "1 loaded, 1 skipped (already loaded)" in more
    assert Session.objects.filter(identity__in=[demo.session_identity(0), demo.session_identity(1)]).count() == 2

    removed = run_command("--remove")
    assert "Removed 2 demo session(s)" in removed and "deleted the demo config" in removed
    assert not Session.objects.exists() and not Chunk.objects.exists()
    assert not config_store.has_config(demo_config.identifier())


@pytest.mark.django_db
def test_data_left_by_an_interrupted_load_is_replaced_not_merged(api):
    identity = demo.session_identity(0)
    demo.load_demo(sessions=1, minutes=2, now=NOW)
    create_or_update_session("other")  # keeps the database non-empty; irrelevant to the demo
    Session.objects.filter(identity=identity).delete()  # as if the load stopped before creating the session
    assert Chunk.objects.filter(identity=identity).exists()
    demo.load_demo(sessions=1, minutes=2, now=NOW)
    assert len(periodic_values(rest_items(api, identity, "periodic", "1"), 1)) == 2 * 60 * 100


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.django_db
def test_offer_on_an_empty_database(monkeypatch):
    # Not a terminal: a hint, never a prompt, nothing loaded.
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    out = run_command("--offer", "--minutes", "2", "--sessions", "1")
    assert "python manage.py load_demo" in out and not Session.objects.exists()
    # A terminal: asks; "n" declines, Enter accepts.
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    out = run_command("--offer", "--minutes", "2", "--sessions", "1")
    assert "Load 1 demo sessions" in out and "Not loaded" in out and not Session.objects.exists()
    monkeypatch.setattr(sys, "stdin", FakeTerminal("\n"))
    out = run_command("--offer", "--minutes", "2", "--sessions", "1")
    assert "1 loaded" in out and Session.objects.count() == 1
    # Sessions exist: says and loads nothing.
    monkeypatch.setattr(sys, "stdin", FakeTerminal("y\n"))
    assert run_command("--offer", "--minutes", "2", "--sessions", "2") == ""
    assert Session.objects.count() == 1


@pytest.mark.django_db
def test_bad_arguments():
    with pytest.raises(CommandError, match="sessions must be between 1 and 20"):
        run_command("--sessions", "0")
    with pytest.raises(CommandError, match="minutes must be between"):
        run_command("--minutes", "0.5")
    assert not Session.objects.exists()


def test_short_sessions_cut_the_run_at_the_end():
    run = car.simulate(90.0, seed=3)
    assert all(len(v) == 9000 for v in run.periodic.values())
    assert run.laps and run.laps[-1].end <= 90.0 and not run.laps[-1].complete
    assert all(t < 90.0 for t, *_ in run.events)
    assert all(t < 90.0 for times, _ in run.timestamped.values() for t in times)
