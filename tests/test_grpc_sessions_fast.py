"""The hot path of CreateOrUpdateSession (live ingest updates): few statements, same results, no lost updates."""

import threading

import pytest
from django.db import DataError, connection
from django.test.utils import CaptureQueriesContext
from rta.toolkit.api import session_service_pb2 as pb  # noqa: E402  (importable once settings load)

from rta_site.grpc_errors import _mapped_errors
from sessions_app.grpc.servicer import SessionStoreServicer
from sessions_app.models import Marker, Session
from sessions_app.services import session_rows, updates
from sessions_app.services.updates import create_or_update_session


def live_update(n):
    """The five ops of a live ingest update (as bench/grpc_sessions.py sends them)."""
    return [
        ("update_heartbeat", None),
        ("update_details", {"category": "", "details": {"Lap": str(n % 50 + 1), "Fuel": f"{100 - n}"}}),
        ("extend_time_range", (0, (n + 1) * 1_000_000_000)),
        (
            "update_markers",
            [
                {
                    "id": f"lap-{n % 3}",
                    "category": "Laps",
                    "type": "Lap",
                    "label": f"Lap {n}",
                    "start_time": n,
                    "end_time": n + 1,
                    "details": {"valid": True},
                }
            ],
        ),
        ("set_state", 2),
    ]


def snapshot(identity):
    s = Session.objects.get(identity=identity)
    markers = {
        m.marker_id: (m.category, m.type, m.label, m.description, m.start_time, m.end_time, m.details)
        for m in Marker.objects.filter(session_id=identity)
    }
    return (s.state, s.details, s.ext_details, s.start_time, s.end_time, s.last_sequence, markers)


def test_a_live_update_of_an_existing_session_is_two_statements(postgres):
    create_or_update_session("hot", live_update(0), create={"state": 2})
    with CaptureQueriesContext(connection) as queries:
        assert create_or_update_session("hot", live_update(1), sequence=7) is True
    # In the test's transaction the call runs in a savepoint (so that a refused write leaves the caller's
    # transaction usable); a request outside one, as the gRPC server makes, has no savepoint round trips.
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 2, statements
    assert statements[0].startswith("SELECT xmin,") and "FOR UPDATE" not in statements[0]
    assert statements[1].startswith("WITH row_write AS (UPDATE")
    state, details, _, start, end, sequence, markers = snapshot("hot")
    assert (state, details, start, end, sequence) == (2, {"Lap": "2", "Fuel": "99"}, 0, 2_000_000_000, 7)
    assert markers["lap-1"] == ("Laps", "Lap", "Lap 1", None, 1, 2, {"valid": True})


def test_the_unlocked_and_the_locked_path_store_the_same(postgres, monkeypatch):
    for n in range(4):
        create_or_update_session("unlocked", live_update(n), create={"state": 2}, sequence=n)
    monkeypatch.setattr(updates, "_unlocked_applies", lambda db, ops: False)
    for n in range(4):
        create_or_update_session("locked", live_update(n), create={"state": 2}, sequence=n)
    assert snapshot("unlocked") == snapshot("locked")
    # A replayed sequence is skipped on either path.
    monkeypatch.undo()
    assert create_or_update_session("unlocked", [("set_state", 4)], sequence=3) is False
    assert Session.objects.get(identity="unlocked").state == 2


@pytest.mark.django_db(transaction=True)
def test_a_row_changed_between_read_and_write_is_applied_again_under_the_lock(postgres, monkeypatch):
    create_or_update_session("raced", [("update_details", {"details": {"mine": 1}})], create={"state": 2})
    applied = []
    real_apply = updates._apply

    def apply_with_a_concurrent_write(change, ops, sequence):
        if not applied:
            # Another writer commits between this call's read and its write (autocommit: a new row version).
            Session.objects.filter(identity="raced").update(details={"mine": 1, "theirs": 2})
        applied.append(change.deferred is not None)
        return real_apply(change, ops, sequence)

    monkeypatch.setattr(updates, "_apply", apply_with_a_concurrent_write)
    assert create_or_update_session("raced", [("update_details", {"details": {"new": 3}})]) is True
    # First unlocked (its write found another version and wrote nothing), then again with the row locked.
    assert applied == [True, False]
    assert Session.objects.get(identity="raced").details == {"mine": 1, "theirs": 2, "new": 3}


def test_a_refused_write_leaves_the_callers_transaction_usable(postgres):
    create_or_update_session("refused", [("update_details", {"details": {"kept": 1}})], create={"state": 2})
    with pytest.raises(DataError):
        create_or_update_session("refused", [("update_markers", [{"id": "long", "label": "x" * 2000}])])
    # Still inside the test's transaction: the next statements run.
    assert create_or_update_session("refused", [("update_details", {"details": {"more": 2}})]) is True
    assert Session.objects.get(identity="refused").details == {"kept": 1, "more": 2}


def test_ops_beyond_the_row_and_one_marker_batch_take_the_locked_path(postgres):
    create_or_update_session("mixed", [], create={"state": 2})
    with CaptureQueriesContext(connection) as queries:
        create_or_update_session(
            "mixed",
            [
                ("update_markers", [{"id": "m", "label": "first"}]),
                ("update_markers", [{"id": "m", "label": "second"}]),
            ],
        )
    statements = [q["sql"] for q in queries.captured_queries]
    assert not any(sql.startswith("WITH row_write") for sql in statements)
    assert any(sql.endswith("FOR UPDATE") for sql in statements)
    assert Marker.objects.get(session_id="mixed", marker_id="m").label == "second"


class _Context:
    def abort(self, code, message):
        raise _Aborted(code, message)

    def code(self):
        return None


class _Aborted(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_value_the_database_cannot_store_changes_nothing(postgres):
    create_or_update_session("full", live_update(0), create={"state": 2})
    before = snapshot("full")
    with pytest.raises(DataError):
        create_or_update_session(
            "full",
            [("update_details", {"details": {"x": 1}}), ("update_markers", [{"id": "long", "label": "x" * 2000}])],
        )
    assert snapshot("full") == before
    # Through the gRPC adapter (and the server's one error mapping) it is the client's error.
    request = pb.CreateOrUpdateSessionRequest(
        identity="full",
        updates=[
            pb.SessionUpdate(
                update_markers=pb.SessionUpdate.MarkersMap(
                    markers_by_category={
                        "Laps": pb.SessionUpdate.MarkersList(markers=[pb.Marker(id="long", label="x" * 2000)])
                    }
                )
            )
        ],
    )
    context = _Context()
    with pytest.raises(_Aborted) as aborted, _mapped_errors(context, "CreateOrUpdateSession"):
        SessionStoreServicer().CreateOrUpdateSession(request, context)
    code, message = aborted.value.args
    assert code.name == "INVALID_ARGUMENT" and message.startswith("value not storable")
    assert snapshot("full") == before


def test_a_missing_session_is_created_on_the_locked_path(postgres):
    assert create_or_update_session("new", live_update(5), create={"state": 2}) is True
    state, details, _, start, end, _, markers = snapshot("new")
    assert (state, details, start, end) == (2, {"Lap": "6", "Fuel": "95"}, 0, 6_000_000_000)
    assert list(markers) == ["lap-2"]


# --- outside a transaction: the rows this process wrote last --------------------------------------

transactional = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recent_rows():
    session_rows.RECENT.clear()
    yield session_rows.RECENT
    session_rows.RECENT.clear()


@transactional
def test_the_next_update_of_a_row_this_process_wrote_is_one_statement(postgres, recent_rows):
    create_or_update_session("cached", live_update(0), create={"state": 2})
    create_or_update_session("cached", live_update(1))  # read, then written: now remembered
    with CaptureQueriesContext(connection) as queries:
        create_or_update_session("cached", live_update(2), sequence=3)
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 1 and statements[0].startswith("WITH row_write AS (UPDATE"), statements
    state, details, _, start, end, sequence, markers = snapshot("cached")
    assert (state, details, start, end, sequence) == (2, {"Lap": "3", "Fuel": "98"}, 0, 3_000_000_000, 3)
    assert set(markers) == {"lap-0", "lap-1", "lap-2"}


@transactional
def test_a_row_another_writer_changed_since_is_read_again(postgres, recent_rows):
    create_or_update_session("shared", [("update_details", {"details": {"mine": 1}})], create={"state": 2})
    create_or_update_session("shared", [("update_details", {"details": {"mine": 2}})])
    # Another process (or the locked path) writes a new version of the row.
    Session.objects.filter(identity="shared").update(details={"mine": 2, "theirs": 1}, end_time=5)
    with CaptureQueriesContext(connection) as queries:
        create_or_update_session(
            "shared", [("update_details", {"details": {"mine": 3}}), ("extend_time_range", (1, 4))]
        )
    # The remembered version no longer matched: nothing written by it, then read and written.
    assert len(queries.captured_queries) == 3
    s = Session.objects.get(identity="shared")
    assert (s.details, s.start_time, s.end_time) == ({"mine": 3, "theirs": 1}, 1, 5)


@transactional
def test_a_replay_by_the_remembered_row_is_checked_against_the_stored_one(postgres, recent_rows):
    create_or_update_session("again", [], create={"state": 2}, sequence=10)
    create_or_update_session("again", [("set_state", 1)], sequence=11)  # remembered, with sequence 11
    # Deleted and created again by another process: its sequence starts over.
    Session.objects.filter(identity="again").delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sessions_app_session (identity, state, timestamp_text, timestamp_ns, timestamp, identifier,"
            " details, ext_details, heartbeat, last_sequence, created, updated)"
            " VALUES ('again', 2, 't', 0, now(), 'again', '{}', '{}', now(), 4, now(), now())"
        )
    assert create_or_update_session("again", [("set_state", 1)], sequence=5) is True
    assert Session.objects.get(identity="again").last_sequence == 5
    assert create_or_update_session("again", [("set_state", 4)], sequence=5) is False
    assert Session.objects.get(identity="again").state == 1


@transactional
def test_concurrent_unlocked_updates_from_several_connections_lose_nothing(postgres, recent_rows):
    create_or_update_session("contended", [], create={"state": 2})
    barrier = threading.Barrier(3)
    errors = []

    def writer(n):
        try:
            barrier.wait()
            for i in range(40):
                create_or_update_session(
                    "contended",
                    [
                        ("update_details", {"details": {f"w{n}-{i}": i}}),
                        ("extend_time_range", (n, 100 * n + i)),
                        ("update_markers", [{"id": f"w{n}-{i}", "start_time": i}]),
                    ],
                )
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    s = Session.objects.get(identity="contended")
    assert s.details == {f"w{n}-{i}": i for n in range(3) for i in range(40)}
    assert (s.start_time, s.end_time) == (0, 239)
    assert Marker.objects.filter(session_id="contended").count() == 120
