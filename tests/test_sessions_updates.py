"""CreateOrUpdateSession semantics (spec §7): set/update/delete ops, sequences, one transaction per call."""

import threading
import time

import pytest
from django.db import connection

from rta_core.errors import InvalidArgument
from sessions_app.models import (
    ROOT_FOLDER,
    ConfigBinding,
    DataBinding,
    Folder,
    FolderLink,
    Marker,
    RefKind,
    Session,
    SessionRef,
    SessionState,
)
from sessions_app.services.updates import create_or_update_session, delete_sessions
from tests.factories import make_session

# Everything but the concurrency test (PostgreSQL row locks) also runs on SQLite.


def apply(identity, *ops, **kwargs):
    return create_or_update_session(identity, list(ops), **kwargs)


def get(identity):
    return Session.objects.get(identity=identity)


def folders_of(identity):
    return sorted(FolderLink.objects.filter(session_id=identity).values_list("folder_id", flat=True))


def refs_of(identity, kind):
    return sorted(SessionRef.objects.filter(session_id=identity, kind=kind).values_list("uri", flat=True))


def markers_of(identity):
    return {
        m.marker_id: (m.category, m.label, m.start_time, m.end_time, m.details)
        for m in Marker.objects.filter(session_id=identity)
    }


def config_bindings_of(identity):
    return dict(ConfigBinding.objects.filter(session_id=identity).values_list("identifier", "channel_offset"))


def data_bindings_of(identity):
    return {
        (b.source, b.identity, b.time_ref): (b.session_time_offset, b.channel_bindings)
        for b in DataBinding.objects.filter(session_id=identity)
    }


# --- creation ------------------------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_create_defaults_closed_now_identity_and_root_folder():
    before = time.time_ns()
    assert apply("new-1") is True
    s = get("new-1")
    assert s.state == SessionState.CLOSED
    assert s.identifier == "new-1"
    assert before - 1_000_000 <= s.timestamp_ns <= time.time_ns()
    assert s.timestamp_text.endswith("+00:00")
    assert folders_of("new-1") == [ROOT_FOLDER]
    assert s.details == {} and s.ext_details == {}


@pytest.mark.embedded
@pytest.mark.django_db
def test_create_if_not_exists_is_only_used_for_a_new_session():
    create = {"state": SessionState.OPEN, "timestamp": "2024-05-01T12:00:00.123456789+02:00", "identifier": "Run 1"}
    apply("new-2", create=create)
    s = get("new-2")
    assert (s.state, s.identifier, s.timestamp_text) == (
        SessionState.OPEN,
        "Run 1",
        "2024-05-01T12:00:00.123456789+02:00",
    )
    assert s.timestamp_ns == 1_714_557_600_123_456_789
    apply("new-2", ("set_type", "Race"), create={"state": SessionState.FAILED, "identifier": "Other"})
    s = get("new-2")
    assert (s.state, s.identifier, s.type) == (SessionState.OPEN, "Run 1", "Race")


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "identity,create,fragment",
    [
        ("", None, "identity"),
        (None, None, "identity"),
        ("x" * 1025, None, "identity"),
        ("bad-state", {"state": 3}, "state"),
        ("bad-ts", {"timestamp": "yesterday"}, "timestamp"),
        ("far-ts", {"timestamp": "9999-12-31T23:59:59Z"}, "timestamp"),
    ],
)
def test_invalid_create_arguments(identity, create, fragment):
    with pytest.raises(InvalidArgument) as exc:
        create_or_update_session(identity, [], create=create)
    assert fragment in exc.value.message
    assert not Session.objects.exists()


@pytest.mark.embedded
@pytest.mark.django_db
def test_unknown_op_is_rejected_before_anything_happens():
    with pytest.raises(InvalidArgument) as exc:
        apply("u", ("set_type", "Race"), ("set_colour", "red"))
    assert "set_colour" in exc.value.message
    assert not Session.objects.filter(identity="u").exists()


# --- scalar properties ---------------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_scalar_ops():
    make_session("s")
    apply(
        "s",
        ("set_state", SessionState.TRUNCATED),
        ("set_timestamp", "2024-01-01T00:00:00-03:30"),
        ("set_identifier", "Renamed"),
        ("set_type", "Race"),
        ("set_quality", 1),
        ("set_group", "G"),
        ("set_version", "2.0.0"),
        ("set_time_range", (10, 20)),
        ("extend_time_range", (5, 15)),
        ("extend_time_range", (12, 30)),
    )
    s = get("s")
    assert s.state == SessionState.TRUNCATED
    assert s.timestamp_text == "2024-01-01T00:00:00-03:30"
    assert s.timestamp_ns == 1_704_079_800_000_000_000
    assert (s.identifier, s.type, s.quality, s.group, s.version) == ("Renamed", "Race", 1.0, "G", "2.0.0")
    assert (s.start_time, s.end_time) == (5, 30)
    apply(
        "s",
        ("clear_type", None),
        ("clear_quality", None),
        ("clear_group", None),
        ("clear_version", None),
        ("clear_time_range", None),
    )
    s = get("s")
    assert (s.type, s.quality, s.group, s.version, s.start_time, s.end_time) == (None,) * 6
    apply("s", ("extend_time_range", (7, 8)))
    assert (get("s").start_time, get("s").end_time) == (7, 8)


@pytest.mark.embedded
@pytest.mark.django_db
def test_update_heartbeat_touches_heartbeat():
    make_session("hb")
    old = get("hb").heartbeat
    time.sleep(0.002)
    apply("hb", ("update_heartbeat", None))
    assert get("hb").heartbeat > old


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "op,arg,fragment",
    [
        ("set_state", 3, "state"),
        ("set_state", "open", "state"),
        ("set_state", True, "state"),
        ("set_timestamp", "2024-02-30T00:00:00Z", "timestamp"),
        ("set_timestamp", "1500-01-01T00:00:00Z", "timestamp"),
        ("set_time_range", (20, 10), "after"),
        ("set_time_range", (1.5, 10), "start_time"),
        ("extend_time_range", (5, 1), "after"),
        ("set_identifier", "", "identifier"),
        ("set_type", 5, "type"),
        ("set_quality", 1.5, "quality"),
        ("set_quality", -0.1, "quality"),
        ("set_quality", float("nan"), "quality"),
        ("set_quality", True, "quality"),
    ],
)
def test_invalid_scalar_ops(op, arg, fragment):
    make_session("bad", type="Before")
    with pytest.raises(InvalidArgument) as exc:
        apply("bad", (op, arg))
    assert fragment in exc.value.message
    assert f"updates[0] {op}" in exc.value.message
    assert get("bad").type == "Before"


# --- details and extDetails ----------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_details_set_update_delete():
    make_session("d", details={"a": 1, "b": "x"})
    apply("d", ("update_details", {"details": {"b": "y", "c": True}}))
    assert get("d").details == {"a": 1, "b": "y", "c": True}
    apply("d", ("set_details", {"details": {"z": 2.5}}))
    assert get("d").details == {"z": 2.5}
    apply("d", ("update_details_json", {"json": '{"n": 3, "s": "t"}'}))
    assert get("d").details == {"z": 2.5, "n": 3, "s": "t"}
    apply("d", ("delete_details", {"keys": ["z", "missing"]}))
    assert get("d").details == {"n": 3, "s": "t"}
    apply("d", ("set_details_json", {"json": '{"only": false}'}))
    assert get("d").details == {"only": False}
    apply("d", ("set_details", {"details": {}}))
    assert get("d").details == {}


@pytest.mark.embedded
@pytest.mark.django_db
def test_categories_are_ext_details_groups():
    make_session("e", details={"plain": 1})
    apply(
        "e",
        ("set_details", {"category": "CarSetup", "details": {"RideHeight": 30, "Wing": "high"}}),
        ("update_details", {"category": "Weather", "details": {"Temp": 21}}),
        ("update_details_json", {"category": "CarSetup", "json": '{"Wing": "low", "Toe": -0.5}'}),
    )
    s = get("e")
    assert s.details == {"plain": 1}
    assert s.ext_details == {"CarSetup": {"RideHeight": 30, "Wing": "low", "Toe": -0.5}, "Weather": {"Temp": 21}}
    apply("e", ("delete_details", {"category": "Weather", "keys": ["Temp"]}))
    assert get("e").ext_details == {"CarSetup": {"RideHeight": 30, "Wing": "low", "Toe": -0.5}}
    apply("e", ("set_details_json", {"category": "CarSetup", "json": ""}))
    assert get("e").ext_details == {}
    assert get("e").details == {"plain": 1}


@pytest.mark.embedded
@pytest.mark.django_db
def test_no_empty_ext_details_group_is_left_behind(api):
    make_session("g")
    apply(
        "g",
        ("update_details", {"category": "Empty", "details": {}}),
        ("update_details_json", {"category": "AlsoEmpty", "json": "{}"}),
        ("delete_details", {"category": "Never", "keys": ["x"]}),
    )
    assert get("g").ext_details == {}
    assert "extDetails" not in api.get("/rta/v2/sessions/g", {"prop": "extDetails"}).json()
    with pytest.raises(InvalidArgument) as exc:
        apply("g", ("set_details", {"category": 5, "details": {"a": 1}}))
    assert "category" in exc.value.message


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "op,arg,fragment",
    [
        ("set_details", {"details": {"nested": {"a": 1}}}, "details.nested"),
        ("update_details", {"details": {"list": [1, 2]}}, "details.list"),
        ("update_details", {"details": {"nothing": None}}, "details.nothing"),
        ("update_details", {"details": {"inf": float("inf")}}, "details.inf"),
        ("update_details", {"details": {"": 1}}, "keys"),
        ("update_details", {"details": ["a"]}, "object"),
        ("update_details", {"category": "G", "details": {"k": {"deep": True}}}, "extDetails.G.k"),
        ("set_details", {"category": "G", "details": {"k": None}}, "extDetails.G.k"),
        ("set_details_json", {"json": '{"nested": {"a": 1}}'}, "details.nested"),
        ("update_details_json", {"json": '{"n": null}'}, "details.n"),
        ("update_details_json", {"category": "G", "json": '{"a": [1]}'}, "extDetails.G.a"),
        ("update_details_json", {"json": "{not json"}, "malformed"),
        ("update_details_json", {"json": "[1, 2]"}, "object"),
    ],
)
def test_nested_or_null_detail_values_are_rejected(op, arg, fragment):
    make_session("n", details={"keep": 1})
    with pytest.raises(InvalidArgument) as exc:
        apply("n", (op, arg))
    assert fragment in exc.value.message
    s = get("n")
    assert s.details == {"keep": 1} and s.ext_details == {}


# --- markers, config bindings, data bindings -----------------------------------------------------

LAP1 = {"id": "lap-1", "category": "Laps", "label": "Lap 1", "start_time": 0, "end_time": 10, "details": {"n": 1}}
LAP2 = {"id": "lap-2", "category": "Laps", "label": "Lap 2", "start_time": 10, "end_time": 20}


@pytest.mark.embedded
@pytest.mark.django_db
def test_markers_set_update_delete():
    make_session("m")
    apply("m", ("set_markers", [LAP1, LAP2]))
    assert markers_of("m") == {
        "lap-1": ("Laps", "Lap 1", 0, 10, {"n": 1}),
        "lap-2": ("Laps", "Lap 2", 10, 20, {}),
    }
    apply(
        "m", ("update_markers", [{**LAP2, "label": "Lap 2 (fast)"}, {"id": "pit", "category": "Pit", "start_time": 15}])
    )
    assert markers_of("m") == {
        "lap-1": ("Laps", "Lap 1", 0, 10, {"n": 1}),
        "lap-2": ("Laps", "Lap 2 (fast)", 10, 20, {}),
        "pit": ("Pit", "", 15, None, {}),
    }
    apply("m", ("delete_markers", ["lap-1", "missing"]))
    assert set(markers_of("m")) == {"lap-2", "pit"}
    apply("m", ("set_markers", [LAP1]))
    assert set(markers_of("m")) == {"lap-1"}
    apply("m", ("set_markers", []))
    assert markers_of("m") == {}


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "op,markers,fragment",
    [
        ("set_markers", [LAP1, {**LAP2, "id": "lap-1"}], "more than once"),
        ("update_markers", [{**LAP1, "start_time": 50}], "starts after it ends"),
        ("update_markers", [{"id": ""}], "marker id"),
        ("set_markers", [{"id": "x", "details": [1]}], "details"),
    ],
)
def test_invalid_markers_are_rejected(op, markers, fragment):
    make_session("m", markers=[LAP2])
    with pytest.raises(InvalidArgument) as exc:
        apply("m", (op, markers))
    assert fragment in exc.value.message
    assert set(markers_of("m")) == {"lap-2"}


@pytest.mark.embedded
@pytest.mark.django_db
def test_config_bindings_set_update_delete():
    make_session("c")
    apply("c", ("set_config_bindings", [{"identifier": "cfg-a"}, {"identifier": "cfg-b", "channel_offset": 10}]))
    assert config_bindings_of("c") == {"cfg-a": 0, "cfg-b": 10}
    apply("c", ("update_config_bindings", [{"identifier": "cfg-b", "channel_offset": 20}, {"identifier": "cfg-c"}]))
    assert config_bindings_of("c") == {"cfg-a": 0, "cfg-b": 20, "cfg-c": 0}
    apply("c", ("delete_config_bindings", ["cfg-a", "missing"]))
    assert config_bindings_of("c") == {"cfg-b": 20, "cfg-c": 0}
    apply("c", ("set_config_bindings", [{"identifier": "cfg-z", "channel_offset": 1}]))
    assert config_bindings_of("c") == {"cfg-z": 1}
    for bad in (
        [{"identifier": ""}],
        [{"identifier": "x", "channel_offset": -1}],
        [{"identifier": "x", "channel_offset": 1.5}],
        [{"identifier": "x", "channel_offset": 1 << 32}],
    ):
        with pytest.raises(InvalidArgument):
            apply("c", ("update_config_bindings", bad))
    assert config_bindings_of("c") == {"cfg-z": 1}
    # The wire type is uint32: offsets past int32 are stored as they are.
    apply("c", ("update_config_bindings", [{"identifier": "cfg-high", "channel_offset": 0xFFFFFFFF}]))
    assert config_bindings_of("c") == {"cfg-z": 1, "cfg-high": 0xFFFFFFFF}


CHANNELS = [{"first_data_channel": 0, "first_session_channel": 100, "last_session_channel": 103}]


@pytest.mark.embedded
@pytest.mark.django_db
def test_data_bindings_set_update_delete_by_key():
    make_session("b")
    apply(
        "b",
        (
            "set_data_bindings",
            [
                {
                    "source": "kafka",
                    "identity": "s1",
                    "time_ref": 1,
                    "session_time_offset": 5,
                    "channel_bindings": CHANNELS,
                },
                {"identity": "s2"},
            ],
        ),
    )
    assert data_bindings_of("b") == {("kafka", "s1", 1): (5, CHANNELS), ("", "s2", 0): (0, [])}
    apply(
        "b",
        (
            "update_data_bindings",
            [
                {"source": "kafka", "identity": "s1", "time_ref": 1, "session_time_offset": 7},
                {"source": "kafka", "identity": "s1", "time_ref": 2},
            ],
        ),
    )
    assert data_bindings_of("b") == {
        ("kafka", "s1", 1): (7, []),
        ("kafka", "s1", 2): (0, []),
        ("", "s2", 0): (0, []),
    }
    apply("b", ("delete_data_bindings", [{"source": "kafka", "identity": "s1", "time_ref": 1}, {"identity": "gone"}]))
    assert set(data_bindings_of("b")) == {("kafka", "s1", 2), ("", "s2", 0)}
    with pytest.raises(InvalidArgument) as exc:
        apply(
            "b",
            (
                "update_data_bindings",
                [
                    {
                        "identity": "s3",
                        "channel_bindings": [
                            {"first_data_channel": 0, "first_session_channel": 5, "last_session_channel": 4}
                        ],
                    }
                ],
            ),
        )
    assert "last_session_channel" in exc.value.message
    with pytest.raises(InvalidArgument):
        apply("b", ("set_data_bindings", [{"identity": "s3", "session_start_time": 9, "session_end_time": 1}]))
    assert set(data_bindings_of("b")) == {("kafka", "s1", 2), ("", "s2", 0)}


# --- folders and refs ----------------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_folder_ops_link_unlink_and_fall_back_to_the_root():
    make_session("f")
    assert folders_of("f") == [ROOT_FOLDER]
    apply("f", ("set_folders", ["team-a", "team-b"]))
    assert folders_of("f") == ["team-a", "team-b"]
    # Folders named before they exist are created under the root.
    assert Folder.objects.get(identity="team-a").parent_id == ROOT_FOLDER
    apply("f", ("update_folders", ["team-c", "team-a"]))
    assert folders_of("f") == ["team-a", "team-b", "team-c"]
    apply("f", ("delete_folders", ["team-a", "team-b"]))
    assert folders_of("f") == ["team-c"]
    apply("f", ("delete_folders", ["team-c"]))
    assert folders_of("f") == [ROOT_FOLDER]
    apply("f", ("set_folders", ["team-b"]))
    assert folders_of("f") == ["team-b"]
    apply("f", ("set_folders", []))
    assert folders_of("f") == [ROOT_FOLDER]
    assert Folder.objects.filter(identity__in=["team-a", "team-b", "team-c"]).count() == 3


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "kind,prefix",
    [(RefKind.ANCHOR, "ref_anchors"), (RefKind.CHILD_OF, "child_of_refs"), (RefKind.ALTERNATE_OF, "alternate_of_refs")],
)
def test_ref_ops(kind, prefix):
    make_session("r")
    apply("r", (f"set_{prefix}", ["guid:1", "guid:2", "guid:1"]))
    assert refs_of("r", kind) == ["guid:1", "guid:2"]
    apply("r", (f"update_{prefix}", ["guid:3", "guid:2"]))
    assert refs_of("r", kind) == ["guid:1", "guid:2", "guid:3"]
    apply("r", (f"delete_{prefix}", ["guid:1", "guid:missing"]))
    assert refs_of("r", kind) == ["guid:2", "guid:3"]
    apply("r", (f"set_{prefix}", ["acq:engine-5/2021-05-20T08:44:21+0000"]))
    assert refs_of("r", kind) == ["acq:engine-5/2021-05-20T08:44:21+0000"]
    others = {RefKind.ANCHOR, RefKind.CHILD_OF, RefKind.ALTERNATE_OF} - {kind}
    assert all(refs_of("r", k) == [] for k in others)
    with pytest.raises(InvalidArgument):
        apply("r", (f"update_{prefix}", [""]))


# --- sequences and transactions ------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_sequence_skips_replayed_requests():
    assert apply("q", ("set_details", {"details": {"v": 1}}), sequence=10) is True
    assert get("q").last_sequence == 10
    assert apply("q", ("set_details", {"details": {"v": 2}}), sequence=10) is False
    assert apply("q", ("set_details", {"details": {"v": 3}}), sequence=9) is False
    assert get("q").details == {"v": 1}
    assert apply("q", ("set_details", {"details": {"v": 4}}), sequence=11) is True
    assert get("q").details == {"v": 4} and get("q").last_sequence == 11
    # Without a sequence a request is always applied and leaves the last sequence alone.
    assert apply("q", ("update_details", {"details": {"w": 5}})) is True
    assert get("q").details == {"v": 4, "w": 5} and get("q").last_sequence == 11
    assert apply("q", ("update_details", {"details": {"x": 6}}), sequence=5) is False
    assert "x" not in get("q").details


@pytest.mark.embedded
@pytest.mark.django_db
def test_sequence_applies_to_a_session_that_never_had_one():
    make_session("q2")
    assert apply("q2", ("set_type", "Race"), sequence=0) is True
    assert get("q2").last_sequence == 0 and get("q2").type == "Race"
    assert apply("q2", ("set_type", "Other"), sequence=0) is False


@pytest.mark.embedded
@pytest.mark.django_db
def test_an_invalid_op_in_the_middle_rolls_the_whole_request_back():
    make_session("t", details={"a": 1}, folders=["before"], markers=[LAP1], anchors=["guid:t"])
    with pytest.raises(InvalidArgument) as exc:
        apply(
            "t",
            ("update_details", {"details": {"b": 2}}),
            ("set_markers", [LAP2]),
            ("set_folders", ["after"]),
            ("set_config_bindings", [{"identifier": "cfg"}]),
            ("set_ref_anchors", ["guid:other"]),
            ("set_quality", 7),
            ("set_type", "never"),
        )
    assert "updates[5] set_quality" in exc.value.message
    s = get("t")
    assert s.details == {"a": 1} and s.quality is None and s.type is None
    assert set(markers_of("t")) == {"lap-1"}
    assert folders_of("t") == ["before"]
    assert config_bindings_of("t") == {}
    assert refs_of("t", RefKind.ANCHOR) == ["guid:t"]
    assert not Folder.objects.filter(identity="after").exists()


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_failed_request_does_not_create_the_session_nor_its_sequence():
    with pytest.raises(InvalidArgument):
        apply("never", ("set_type", "Race"), ("set_state", 99), sequence=3, create={"identifier": "N"})
    assert not Session.objects.filter(identity="never").exists()
    assert not FolderLink.objects.filter(session_id="never").exists()
    assert apply("never", ("set_type", "Race"), sequence=3) is True


@pytest.mark.embedded
@pytest.mark.django_db
def test_delete_sessions_ignores_missing_identities():
    make_session("x1", folders=["keep"], markers=[LAP1])
    make_session("x2")
    assert delete_sessions(["x1", "missing", 5]) == 1
    assert list(Session.objects.values_list("identity", flat=True)) == ["x2"]
    assert not Marker.objects.exists()
    assert Folder.objects.filter(identity="keep").exists()


# --- concurrency ---------------------------------------------------------------------------------


def _run_threads(target, count):
    errors = []

    def run(n):
        try:
            target(n)
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_detail_updates_from_two_connections_lose_nothing(postgres):
    barrier = threading.Barrier(2)

    def writer(n):
        barrier.wait()
        for i in range(50):
            apply(
                "busy",
                ("update_details", {"details": {f"t{n}-{i}": i}}),
                ("update_details", {"category": f"G{n}", "details": {f"k{i}": i}}),
                ("update_markers", [{"id": f"t{n}-{i}", "start_time": i}]),
                ("update_folders", [f"folder-{n}"]),
            )

    # Neither thread finds the session: both race to create it, too.
    assert _run_threads(writer, 2) == []
    s = get("busy")
    assert s.details == {f"t{n}-{i}": i for n in range(2) for i in range(50)}
    assert s.ext_details == {f"G{n}": {f"k{i}": i for i in range(50)} for n in range(2)}
    assert Marker.objects.filter(session_id="busy").count() == 100
    assert folders_of("busy") == ["", "folder-0", "folder-1"]
