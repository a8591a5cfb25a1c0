"""Reuse of metamodel detail values (sessions_app.services.metamodel_cache): never older than the data."""

import pytest
from django.db import connection
from django.utils import timezone

from sessions_app.models import Session
from sessions_app.services import metamodel, metamodel_cache
from sessions_app.services.folders import put_folder
from sessions_app.services.updates import create_or_update_session, delete_sessions
from tests.factories import make_session


@pytest.fixture(autouse=True)
def _fresh_cache():
    metamodel_cache.clear()
    yield
    metamodel_cache.clear()


@pytest.fixture
def drivers(postgres):
    put_folder("", "f1", "Folder 1")
    make_session("a", folders=["f1"], details={"Driver": "Ann", "Lap": 2})
    make_session("b", details={"Driver": "Bob", "Lap": 3})


def values(folder=None):
    return {k: d["constraints"]["values"] for k, d in metamodel.metamodel(folder)["details"].items()}


def test_unchanged_data_is_reused_and_answers_alike(drivers):
    first = metamodel.metamodel()
    assert metamodel.metamodel() == first
    assert metamodel_cache.stats == {"rows": 1, "content": 0, "computed": 1}


def test_a_details_write_is_seen_by_the_next_call(drivers):
    assert values() == {"Driver": ["Ann", "Bob"], "Lap": [2, 3]}
    create_or_update_session("b", [("update_details", {"details": {"Lap": 7, "Wet": True}})])
    assert values() == {"Driver": ["Ann", "Bob"], "Lap": [2, 7], "Wet": [True]}
    make_session("c", details={"Driver": "Cy"})
    assert values()["Driver"] == ["Ann", "Bob", "Cy"]
    delete_sessions(["a", "c"])
    assert values() == {"Driver": ["Bob"], "Lap": [7], "Wet": [True]}
    assert metamodel_cache.stats["computed"] == 4


def test_a_number_turned_string_with_the_same_text_is_seen(drivers):
    assert metamodel.metamodel()["details"]["Lap"]["type"] == "integer"
    create_or_update_session("b", [("update_details", {"details": {"Lap": "3"}})])
    lap = metamodel.metamodel()["details"]["Lap"]
    assert (lap["type"], lap["constraints"]["values"]) == ("string", [2, "3"])


def test_writes_that_leave_details_alone_reuse_the_answer_by_content(drivers):
    before = values()
    assert values() == before
    # The first change after an answer is kept computes it again, with the content fingerprint.
    Session.objects.filter(identity="a").update(heartbeat=timezone.now())
    assert values() == before
    assert metamodel_cache.stats == {"rows": 1, "content": 0, "computed": 2}
    Session.objects.filter(identity="a").update(heartbeat=timezone.now(), state=12)
    assert values() == before
    assert metamodel_cache.stats == {"rows": 1, "content": 1, "computed": 2}
    assert values() == before
    assert metamodel_cache.stats["rows"] == 2


def test_a_folder_scope_follows_the_sessions_moving_in_and_out(drivers):
    assert values("f1") == {"Driver": ["Ann"], "Lap": [2]}
    values("f1")
    create_or_update_session("b", [("set_folders", ["f1"])])
    assert values("f1") == {"Driver": ["Ann", "Bob"], "Lap": [2, 3]}
    create_or_update_session("a", [("set_folders", [""])])
    create_or_update_session("b", [("set_folders", [""])])
    assert values("f1") == {}
    assert values() == {"Driver": ["Ann", "Bob"], "Lap": [2, 3]}


def test_a_scope_emptied_right_after_its_first_answer_is_seen_empty(drivers):
    # The content fingerprint of an empty scope, (0, NULL), is also what a skipped one reads.
    assert values("f1") == {"Driver": ["Ann"], "Lap": [2]}
    create_or_update_session("a", [("set_folders", [""])])
    assert values("f1") == {}


def test_ext_detail_values_are_reused_and_refreshed(postgres):
    make_session("a", ext_details={"Car": {"Wing": "low"}})
    want = {"prop": ["extDetails.Car"]}
    props = metamodel.metamodel(props=want["prop"])["extDetails"]["Car"]["properties"]
    assert props["Wing"]["constraints"]["values"] == ["low"]
    create_or_update_session("a", [("set_details", {"category": "Car", "details": {"Wing": "high"}})])
    props = metamodel.metamodel(props=want["prop"])["extDetails"]["Car"]["properties"]
    assert props["Wing"]["constraints"]["values"] == ["high"]


def test_entries_are_bounded_and_zero_turns_reuse_off(drivers, settings):
    settings.RTA_METAMODEL_CACHE_ENTRIES = 1
    values()
    values("f1")
    assert len(metamodel_cache._entries) == 1
    settings.RTA_METAMODEL_CACHE_ENTRIES = 0
    metamodel_cache.clear()
    assert values() == values()
    assert metamodel_cache.stats == {"rows": 0, "content": 0, "computed": 0}
    assert not metamodel_cache._entries


@pytest.mark.parametrize("size", [-1, "64", True])
def test_a_bad_capacity_is_refused_clearly(drivers, settings, size):
    settings.RTA_METAMODEL_CACHE_ENTRIES = size
    with pytest.raises(ValueError, match="RTA_METAMODEL_CACHE_ENTRIES"):
        metamodel.metamodel()


def test_a_write_committed_by_another_connection_is_seen(transactional_db, postgres):
    make_session("a", details={"Driver": "Ann"})
    assert values() == {"Driver": ["Ann"]}
    values()
    import psycopg

    db = connection.settings_dict
    params = {"dbname": db["NAME"], "host": db["HOST"], "port": db["PORT"], "user": db["USER"]}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute(
            f"UPDATE {Session._meta.db_table} SET details = '{{\"Driver\": \"Zoe\"}}'::jsonb WHERE identity = 'a'"
        )
    assert values() == {"Driver": ["Zoe"]}


@pytest.mark.embedded
def test_sqlite_computes_every_time_without_reuse(db):
    make_session("a", details={"Driver": "Ann"})
    assert values() == {"Driver": ["Ann"]}
    if connection.vendor != "postgresql":
        assert metamodel_cache.stats == {"rows": 0, "content": 0, "computed": 0}
