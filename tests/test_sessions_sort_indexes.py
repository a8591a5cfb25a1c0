"""Detail sort indexes: built from the sort's own terms, so PostgreSQL can serve detail sorts from them."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from sessions_app.models import Session
from sessions_app.query.sorting import order_by
from sessions_app.services import sort_indexes
from sessions_app.services.listing import list_sessions
from tests.factories import make_session

pytestmark = pytest.mark.django_db(transaction=True)

VALUES = [12.5, -3, 7, "warm", "Cold", True, False, 100, None, "7"]


@pytest.fixture
def sessions(postgres):
    for n, value in enumerate(VALUES):
        details = {"Other": n} if value is None else {"Temp": value, "Other": n}
        make_session(f"s{n:02}", details=details)
    yield
    sort_indexes.drop_indexes(["Temp"])


def _page(sort):
    return [s.identity for s in list_sessions(sorts=[sort], page_size=50)]


def _plan(sort):
    qs = Session.objects.order_by(*order_by([sort]))[:5]
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            return qs.explain()
        finally:
            cursor.execute("RESET enable_seqscan")


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_index_serves_the_detail_sort_and_keeps_its_order(sessions, direction):
    sort = f"details.Temp:{direction}"
    before = _page(sort)
    assert "rta_sort_" not in _plan(sort)

    assert len(sort_indexes.create_indexes(["Temp"])) == 2
    plan = _plan(sort)
    assert sort_indexes.index_name(sort_indexes.json_property("Temp"), direction) in plan
    assert "Sort Key" not in plan  # rows come out of the index in order: no sort step
    assert _page(sort) == before
    # Numbers first (numerically), then strings (ordinally), then booleans, absent last.
    expected_numbers = sorted([v for v in VALUES if type(v) in (int, float)], reverse=direction == "desc")
    numbers = [Session.objects.get(identity=i).details["Temp"] for i in before[: len(expected_numbers)]]
    assert numbers == expected_numbers
    assert before[-1] == "s08"


def test_create_is_idempotent_and_drop_removes_both(sessions):
    assert len(sort_indexes.create_indexes(["details.Temp"])) == 2
    assert sort_indexes.create_indexes(["Temp"]) == []
    listed = {(row["property"], row["direction"]) for row in sort_indexes.list_indexes()}
    assert listed == {("details.Temp", "asc"), ("details.Temp", "desc")}
    assert all(row["valid"] and row["bytes"] > 0 for row in sort_indexes.list_indexes())
    assert len(sort_indexes.drop_indexes(["Temp"])) == 2
    assert sort_indexes.list_indexes() == []


def test_ext_details_keys_are_indexable(postgres):
    make_session("x1", ext_details={"Car": {"Chassis": "B"}})
    make_session("x2", ext_details={"Car": {"Chassis": "A"}})
    try:
        sort_indexes.create_indexes(["extDetails.Car.Chassis"])
        assert "rta_sort_" in _plan("extDetails.Car.Chassis:asc")
        assert _page("extDetails.Car.Chassis:asc") == ["x2", "x1"]
    finally:
        sort_indexes.drop_indexes(["extDetails.Car.Chassis"])


def test_command_creates_lists_and_drops(sessions, capsys):
    call_command("index_details", "Temp")
    call_command("index_details")
    out = capsys.readouterr().out
    assert "details.Temp" in out and "2 detail sort indexes" in out
    call_command("index_details", "Temp", "--drop")
    assert sort_indexes.list_indexes() == []


@pytest.mark.parametrize("name", ["identity", "timestamp", "extDetails.NoKey", "details."])
def test_command_rejects_what_cannot_be_indexed(postgres, name):
    with pytest.raises(CommandError):
        call_command("index_details", name)


def test_migrate_creates_the_configured_indexes(sessions, settings):
    settings.RTA_INDEXED_DETAILS = ["Temp"]
    call_command("migrate", "sessions_app", verbosity=0)
    assert {row["direction"] for row in sort_indexes.list_indexes()} == {"asc", "desc"}
