"""SessionStore over a real gRPC channel to an in-process server (spec §5, §7)."""

import itertools
import json
import time

import grpc
import pytest
from google.protobuf import empty_pb2, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rta.toolkit.api import session_service_pb2 as pb  # noqa: E402  (importable once settings load)
from rta.toolkit.api import session_service_pb2_grpc as pb_grpc  # noqa: E402

from tests.grpc_helpers import grpc_channel, grpc_server  # noqa: F401  (fixtures)

SERVICE = "rta.toolkit.api.session_service.SessionStore"
EMPTY = empty_pb2.Empty()
U = pb.SessionUpdate
db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store(grpc_channel):  # noqa: F811
    return pb_grpc.SessionStoreStub(grpc_channel)


# --- helpers ---------------------------------------------------------------------------------


def upsert(store, identity, *updates, create=None, sequence=None):
    request = pb.CreateOrUpdateSessionRequest(identity=identity, updates=list(updates))
    if create is not None:
        request.create_if_not_exists.CopyFrom(pb.CreateOrUpdateSessionRequest.CreateIfNotExists(**create))
    if sequence is not None:
        request.sequence.value = sequence
    return store.CreateOrUpdateSession(request, timeout=10)


def get(store, identity, **elements):
    return store.GetSession(
        pb.GetSessionRequest(identity=identity, elements=pb.SessionElements(**elements)), timeout=10
    )


def doc(store, identity, props=()):
    """The REST JSON of a session, through GetSession."""
    return json.loads(get(store, identity, json=True, json_properties=list(props)).json)


def listed(store, **request):
    elements = request.pop("session_elements", pb.SessionElements())
    response = store.ListSessions(pb.ListSessionsRequest(session_elements=elements, **request), timeout=10)
    return [s.identity for s in response.sessions]


def status_of(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def ts(n):
    return f"2024-05-0{n}T10:00:00+00:00"


def markers_map(**by_category):
    return pb.SessionUpdate.MarkersMap(
        markers_by_category={c: pb.SessionUpdate.MarkersList(markers=ms) for c, ms in by_category.items()}
    )


def details(category="", **values):
    return pb.SessionUpdate.DetailsMap(category=category, details=values)


def details_json(value, category=""):
    return pb.SessionUpdate.DetailsJson(category=category, json=value if isinstance(value, str) else json.dumps(value))


def refs(*uris):
    return pb.SessionUpdate.RefUrisList(ref_uris=list(uris))


def folders(*identities):
    return pb.SessionUpdate.FoldersList(identities=list(identities))


def put_folder(store, identity, parent="", label="", description=""):
    store.PutSessionFolder(
        pb.PutSessionFolderRequest(parent_identity=parent, identity=identity, label=label, description=description),
        timeout=10,
    )


def child_folders(store, parent=""):
    response = store.GetSessionFolders(pb.GetSessionFoldersRequest(parent_identity=parent), timeout=10)
    return {f.identity: (f.label, f.description, f.has_children) for f in response.folders}


# --- server plumbing -------------------------------------------------------------------------


def test_health_reports_serving(grpc_channel):  # noqa: F811
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", SERVICE):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_session_store(grpc_channel):  # noqa: F811
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


def test_every_update_op_is_translated():
    from sessions_app.grpc import translate
    from sessions_app.services.updates import OPS

    wire = {f.name for f in pb.SessionUpdate.DESCRIPTOR.oneofs_by_name["op"].fields}
    assert set(translate.ARGUMENTS) == wire == set(OPS)


# --- creation --------------------------------------------------------------------------------


@db
def test_create_with_defaults(store):
    before = int(time.time())
    upsert(store, "s1")
    session = get(store, "s1", json=True, folders=True)
    body = json.loads(session.json)
    assert body["identity"] == "s1" and body["identifier"] == "s1" and body["state"] == "closed"
    assert abs(int(time.mktime(time.strptime(body["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))) - before) < 86400
    assert body["timestamp"].endswith("+00:00")
    assert list(session.folders) == [""]


@db
def test_create_if_not_exists_values_apply_only_on_creation(store):
    upsert(store, "s1", create={"state": 2, "timestamp": "2024-05-01T10:00:00.5+02:00", "identifier": "Run 1"})
    body = doc(store, "s1")
    assert (body["state"], body["timestamp"], body["identifier"]) == ("open", "2024-05-01T10:00:00.5+02:00", "Run 1")
    upsert(store, "s1", create={"state": 4, "timestamp": ts(2), "identifier": "other"})
    assert doc(store, "s1") == body


# --- scalar operations -----------------------------------------------------------------------

SCALAR_CASES = {
    "set_state": ([U(set_state=1)], {"state": "waiting"}),
    "set_timestamp": (
        [U(set_timestamp="2024-05-01T12:00:00.123456789-05:30")],
        {"timestamp": "2024-05-01T12:00:00.123456789-05:30"},
    ),
    "set_time_range": (
        [U(set_time_range=pb.TimeRange(start_time=10, end_time=20))],
        {"timeRange": {"startTime": 10, "endTime": 20}},
    ),
    "extend_time_range": (
        [
            U(set_time_range=pb.TimeRange(start_time=10, end_time=20)),
            U(extend_time_range=pb.TimeRange(start_time=15, end_time=30)),
            U(extend_time_range=pb.TimeRange(start_time=5, end_time=8)),
        ],
        {"timeRange": {"startTime": 5, "endTime": 30}},
    ),
    "extend_time_range_from_none": (
        [U(extend_time_range=pb.TimeRange(start_time=7, end_time=9))],
        {"timeRange": {"startTime": 7, "endTime": 9}},
    ),
    "clear_time_range": (
        [U(set_time_range=pb.TimeRange(start_time=10, end_time=20)), U(clear_time_range=EMPTY)],
        {"timeRange": None, "startTimestamp": None, "endTimestamp": None},
    ),
    "set_identifier": ([U(set_identifier="Renamed")], {"identifier": "Renamed"}),
    "set_type": ([U(set_type=wrappers_pb2.StringValue(value="Race"))], {"type": "Race"}),
    "clear_type": ([U(set_type=wrappers_pb2.StringValue(value="Race")), U(clear_type=EMPTY)], {"type": None}),
    "set_quality": ([U(set_quality=0.75)], {"quality": 0.75}),
    "set_quality_bounds": ([U(set_quality=0.0)], {"quality": 0.0}),
    "clear_quality": ([U(set_quality=1.0), U(clear_quality=EMPTY)], {"quality": None}),
    "set_group": ([U(set_group="Team A")], {"group": "Team A"}),
    "clear_group": ([U(set_group="Team A"), U(clear_group=EMPTY)], {"group": None}),
    "set_version": ([U(set_version="1.2.3")], {"version": "1.2.3"}),
    "clear_version": ([U(set_version="1.2.3"), U(clear_version=EMPTY)], {"version": None}),
}


@db
@pytest.mark.parametrize("case", SCALAR_CASES)
def test_scalar_operation(store, case):
    ops, expected = SCALAR_CASES[case]
    upsert(store, "s1", create={"timestamp": ts(1)})
    upsert(store, "s1", *ops)
    body = doc(store, "s1")
    for key, value in expected.items():
        assert body.get(key) == value, key


@db
def test_time_range_adds_iso_bounds_in_the_session_zone(store):
    upsert(
        store,
        "s1",
        U(set_time_range=pb.TimeRange(start_time=1_000_000_001, end_time=2_000_000_000)),
        create={"timestamp": "2024-05-01T10:00:00+02:00"},
    )
    body = doc(store, "s1")
    assert body["startTimestamp"] == "1970-01-01T02:00:01.000000001+02:00"
    assert body["endTimestamp"] == "1970-01-01T02:00:02+02:00"


@db
def test_update_heartbeat(store):
    upsert(store, "s1")
    first = get(store, "s1", heartbeat_utc=True).heartbeat_utc
    time.sleep(0.01)
    upsert(store, "s1", U(set_group="x"))
    assert get(store, "s1", heartbeat_utc=True).heartbeat_utc == first
    upsert(store, "s1", U(update_heartbeat=EMPTY))
    later = get(store, "s1", heartbeat_utc=True).heartbeat_utc
    assert _parse_iso(later) > _parse_iso(first) and later.endswith("+00:00")


# --- details ---------------------------------------------------------------------------------


@db
def test_set_update_delete_details(store):
    upsert(store, "s1", U(set_details=details(Driver="A", Track="B")))
    assert doc(store, "s1")["details"] == {"Driver": "A", "Track": "B"}
    upsert(store, "s1", U(update_details=details(Track="C", Run="1")))
    assert doc(store, "s1")["details"] == {"Driver": "A", "Track": "C", "Run": "1"}
    upsert(store, "s1", U(set_details=details(Only="x")))
    assert doc(store, "s1")["details"] == {"Only": "x"}
    upsert(
        store,
        "s1",
        U(update_details=details(Run="2")),
        U(delete_details=pb.SessionUpdate.DetailKeysList(keys=["Only", "missing"])),
    )
    assert doc(store, "s1")["details"] == {"Run": "2"}


@db
def test_details_json_keeps_value_types(store):
    upsert(store, "s1", U(set_details_json=details_json({"Lap": 3, "Fuel": 12.5, "Wet": True, "Driver": "A"})))
    assert doc(store, "s1")["details"] == {"Lap": 3, "Fuel": 12.5, "Wet": True, "Driver": "A"}
    upsert(store, "s1", U(update_details_json=details_json({"Lap": 4, "New": "n"})))
    assert doc(store, "s1")["details"] == {"Lap": 4, "Fuel": 12.5, "Wet": True, "Driver": "A", "New": "n"}
    upsert(store, "s1", U(set_details_json=details_json("")))
    assert "details" not in doc(store, "s1")


@db
def test_details_categories_are_ext_details_groups(store):
    upsert(
        store,
        "s1",
        U(set_details=details("CarSetup", RideHeight="30")),
        U(update_details_json=details_json({"Wing": 2}, category="CarSetup")),
        U(set_details_json=details_json({"Temp": 21.5}, category="Weather")),
    )
    body = doc(store, "s1")
    assert "extDetails" not in body and "details" not in body
    assert doc(store, "s1", ["extDetails"])["extDetails"] == {
        "CarSetup": {"RideHeight": "30", "Wing": 2},
        "Weather": {"Temp": 21.5},
    }
    assert doc(store, "s1", ["extDetails.CarSetup.Wing"])["extDetails"] == {"CarSetup": {"Wing": 2}}
    upsert(
        store,
        "s1",
        U(update_details=details("CarSetup", RideHeight="31")),
        U(delete_details=pb.SessionUpdate.DetailKeysList(category="Weather", keys=["Temp"])),
    )
    assert doc(store, "s1", ["extDetails"])["extDetails"] == {"CarSetup": {"RideHeight": "31", "Wing": 2}}
    upsert(store, "s1", U(set_details=details("CarSetup")))
    assert "extDetails" not in doc(store, "s1", ["extDetails"])


# --- markers ---------------------------------------------------------------------------------


def lap(marker_id, start=None, end=None, **fields):
    m = pb.Marker(id=marker_id, **fields)
    if start is not None:
        m.start_time.value = start
    if end is not None:
        m.end_time.value = end
    return m


@db
def test_set_update_delete_markers(store):
    upsert(
        store,
        "s1",
        U(
            set_markers=markers_map(
                Laps=[lap("L1", 0, 10, type="lap", label="Lap 1", details_json='{"n": 1}'), lap("L2", 10, 20)],
                Events=[lap("E1", 5, description=wrappers_pb2.StringValue(value="Yellow flag"))],
            )
        ),
    )
    by_id = {m["id"]: m for m in doc(store, "s1")["markers"]}
    assert by_id["L1"] == {
        "id": "L1",
        "category": "Laps",
        "type": "lap",
        "label": "Lap 1",
        "startTime": 0,
        "endTime": 10,
        "details": {"n": 1},
    }
    assert by_id["E1"] == {"id": "E1", "category": "Events", "description": "Yellow flag", "startTime": 5}
    assert set(by_id) == {"L1", "L2", "E1"}

    upsert(store, "s1", U(update_markers=markers_map(Laps=[lap("L2", 10, 25, label="Lap 2"), lap("L3", 25)])))
    by_id = {m["id"]: m for m in doc(store, "s1")["markers"]}
    assert set(by_id) == {"L1", "L2", "L3", "E1"}
    assert by_id["L2"] == {"id": "L2", "category": "Laps", "label": "Lap 2", "startTime": 10, "endTime": 25}

    upsert(store, "s1", U(delete_markers=pb.SessionUpdate.MarkerIdsList(marker_ids=["L1", "E1", "nope"])))
    assert {m["id"] for m in doc(store, "s1")["markers"]} == {"L2", "L3"}

    upsert(store, "s1", U(set_markers=markers_map(Laps=[lap("X")])))
    assert doc(store, "s1")["markers"] == [{"id": "X", "category": "Laps"}]
    upsert(store, "s1", U(set_markers=markers_map()))
    assert "markers" not in doc(store, "s1")


@db
def test_marker_id_in_two_categories_is_invalid(store):
    code, message = status_of(lambda: upsert(store, "s1", U(set_markers=markers_map(A=[lap("M")], B=[lap("M")]))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'M'" in message


# --- config bindings -------------------------------------------------------------------------


def config_bindings(**offsets):
    return pb.SessionUpdate.ConfigBindingsList(
        config_bindings=[pb.ConfigBinding(identifier=i, channel_offset=o) for i, o in offsets.items()]
    )


@db
def test_set_update_delete_config_bindings(store):
    upsert(store, "s1", U(set_config_bindings=config_bindings(cfgA=0, cfgB=100)))
    assert doc(store, "s1")["configBindings"] == [
        {"identifier": "cfgA", "channelOffset": 0},
        {"identifier": "cfgB", "channelOffset": 100},
    ]
    upsert(store, "s1", U(update_config_bindings=config_bindings(cfgB=200, cfgC=300)))
    assert {b["identifier"]: b["channelOffset"] for b in doc(store, "s1")["configBindings"]} == {
        "cfgA": 0,
        "cfgB": 200,
        "cfgC": 300,
    }
    upsert(store, "s1", U(delete_config_bindings=pb.SessionUpdate.ConfigIdentifiersList(identifiers=["cfgA", "x"])))
    assert {b["identifier"] for b in doc(store, "s1")["configBindings"]} == {"cfgB", "cfgC"}
    upsert(store, "s1", U(set_config_bindings=config_bindings(cfgD=1)))
    assert doc(store, "s1")["configBindings"] == [{"identifier": "cfgD", "channelOffset": 1}]
    upsert(store, "s1", U(set_config_bindings=config_bindings(cfgE=2**32 - 1)))  # the whole uint32 range
    assert doc(store, "s1")["configBindings"] == [{"identifier": "cfgE", "channelOffset": 2**32 - 1}]


# --- data bindings ---------------------------------------------------------------------------


def binding(identity, source="", time_ref=0, start=None, end=None, offset=0, channels=()):
    b = pb.DataBinding(
        key=pb.DataBindingKey(source=source, identity=identity, time_ref=time_ref),
        session_time_offset=offset,
        data_channel_bindings=[
            pb.DataChannelBinding(first_data_channel=d, first_session_channel=f, last_session_channel=la)
            for d, f, la in channels
        ],
    )
    if start is not None:
        b.session_start_time.value = start
    if end is not None:
        b.session_end_time.value = end
    return b


def bindings(*items):
    return pb.SessionUpdate.DataBindingsList(data_bindings=list(items))


def binding_keys(store, identity):
    return {
        (b.key.source, b.key.identity, b.key.time_ref) for b in get(store, identity, data_bindings=True).data_bindings
    }


@db
def test_set_update_delete_data_bindings(store):
    upsert(
        store,
        "s1",
        U(
            set_data_bindings=bindings(
                binding("d1", source="car", start=100, end=200, offset=-50, channels=[(0, 10, 19), (20, 40, 41)]),
                binding("d2", time_ref=7),
            )
        ),
    )
    got = {b.key.identity: b for b in get(store, "s1", data_bindings=True).data_bindings}
    d1, d2 = got["d1"], got["d2"]
    assert (d1.key.source, d1.key.time_ref, d1.session_time_offset) == ("car", 0, -50)
    assert d1.HasField("session_start_time") and (d1.session_start_time.value, d1.session_end_time.value) == (100, 200)
    assert [
        (c.first_data_channel, c.first_session_channel, c.last_session_channel) for c in d1.data_channel_bindings
    ] == [(0, 10, 19), (20, 40, 41)]
    assert not d2.HasField("session_start_time") and not d2.HasField("session_end_time") and d2.key.time_ref == 7

    upsert(store, "s1", U(update_data_bindings=bindings(binding("d2", time_ref=7, offset=5), binding("d3"))))
    got = {b.key.identity: b for b in get(store, "s1", data_bindings=True).data_bindings}
    assert set(got) == {"d1", "d2", "d3"} and got["d2"].session_time_offset == 5

    upsert(
        store,
        "s1",
        U(
            delete_data_bindings=pb.SessionUpdate.DataBindingKeysList(
                keys=[
                    pb.DataBindingKey(source="car", identity="d1"),
                    pb.DataBindingKey(identity="d2", time_ref=8),
                ]
            )
        ),
    )
    assert binding_keys(store, "s1") == {("", "d2", 7), ("", "d3", 0)}

    upsert(store, "s1", U(set_data_bindings=bindings(binding("d4", source="x"))))
    assert binding_keys(store, "s1") == {("x", "d4", 0)}


# --- folders ---------------------------------------------------------------------------------


def session_folders(store, identity):
    return list(get(store, identity, folders=True).folders)


@db
def test_set_update_delete_folders(store):
    upsert(store, "s1", U(set_folders=folders("A", "B")))
    assert session_folders(store, "s1") == ["A", "B"]
    assert child_folders(store)["A"] == ("A", "", False)  # named but absent folders are made under the root
    upsert(store, "s1", U(update_folders=folders("B", "C")))
    assert session_folders(store, "s1") == ["A", "B", "C"]
    upsert(store, "s1", U(delete_folders=folders("A", "C")))
    assert session_folders(store, "s1") == ["B"]
    upsert(store, "s1", U(set_folders=folders("C")))
    assert session_folders(store, "s1") == ["C"]
    upsert(store, "s1", U(delete_folders=folders("C")))
    assert session_folders(store, "s1") == [""]


@db
def test_folders_walk_through(store):
    put_folder(store, "season", label="Season 2024", description="All of it")
    put_folder(store, "r1", parent="season", label="Round 1")
    put_folder(store, "tests", label="Tests")
    assert child_folders(store) == {"season": ("Season 2024", "All of it", True), "tests": ("Tests", "", False)}
    assert child_folders(store, "season") == {"r1": ("Round 1", "", False)}

    # Idempotent; renames; moves by changing the parent.
    put_folder(store, "r1", parent="season", label="Round 1")
    put_folder(store, "tests", label="Testing")
    assert child_folders(store)["tests"] == ("Testing", "", False)

    upsert(store, "race", U(set_folders=folders("r1")), create={"timestamp": ts(1)})
    upsert(store, "other", create={"timestamp": ts(2)})
    assert session_folders(store, "race") == ["r1"]
    assert listed(store, folder_subtree="season") == ["race"]
    assert listed(store, folder_subtree="r1") == ["race"]
    assert listed(store) == ["other", "race"]

    upsert(store, "race", U(update_folders=folders("tests")))
    assert session_folders(store, "race") == ["r1", "tests"]
    assert listed(store, folder_subtree="tests") == ["race"]

    upsert(store, "race", U(delete_folders=folders("r1", "tests")))
    assert session_folders(store, "race") == [""]
    assert listed(store, folder_subtree="season") == []

    upsert(store, "race", U(set_folders=folders("r1", "tests")))
    store.DeleteSessionFolders(pb.DeleteSessionFoldersRequest(folder_identities=["season"]), timeout=10)
    assert session_folders(store, "race") == ["tests"]
    assert set(child_folders(store)) == {"tests"}
    store.DeleteSessionFolders(pb.DeleteSessionFoldersRequest(folder_identities=["tests", "missing"]), timeout=10)
    assert session_folders(store, "race") == [""]
    assert child_folders(store) == {}
    assert listed(store) == ["other", "race"]  # deleting folders never deletes sessions

    code, _ = status_of(
        lambda: store.DeleteSessionFolders(pb.DeleteSessionFoldersRequest(folder_identities=[""]), timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = status_of(lambda: put_folder(store, "", label="root"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = status_of(lambda: put_folder(store, "x", parent="no-such-parent"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no-such-parent" in message


@db
def test_folder_cannot_move_under_itself(store):
    put_folder(store, "a")
    put_folder(store, "b", parent="a")
    code, _ = status_of(lambda: put_folder(store, "a", parent="b"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# --- refs ------------------------------------------------------------------------------------


@db
@pytest.mark.parametrize("kind", ["ref_anchors", "child_of_refs", "alternate_of_refs"])
def test_set_update_delete_refs(store, kind):
    def current():
        return list(getattr(get(store, "s1", refs=True), kind))

    upsert(store, "s1", U(**{f"set_{kind}": refs("u1", "u2")}))
    assert current() == ["u1", "u2"]
    upsert(store, "s1", U(**{f"update_{kind}": refs("u2", "u3")}))
    assert current() == ["u1", "u2", "u3"]
    upsert(store, "s1", U(**{f"delete_{kind}": refs("u1", "zz")}))
    assert current() == ["u2", "u3"]
    upsert(store, "s1", U(**{f"set_{kind}": refs("u3", "u4")}))
    assert current() == ["u3", "u4"]
    session = get(store, "s1", refs=True)
    others = {"ref_anchors", "child_of_refs", "alternate_of_refs"} - {kind}
    assert all(list(getattr(session, k)) == [] for k in others)


# --- relationships ---------------------------------------------------------------------------

PARENT = ("parent", [U(set_ref_anchors=refs("guid:8319B646", "acq:engine-5/2021-05-20T08:44:21+0000"))], 1)
CHILD = ("child", [U(set_child_of_refs=refs("acq:engine-5/2021-05-20T08:44:21+0000"))], 2)
ALTERNATE = ("alternate", [U(set_alternate_of_refs=refs("guid:8319B646"))], 3)


@db
def test_relationships_resolve_in_any_order(store):
    for order in itertools.permutations([PARENT, CHILD, ALTERNATE]):
        arrival = " then ".join(name for name, _, _ in order)
        for name, ops, day in order:
            upsert(store, name, *ops, create={"timestamp": ts(day)})
        parent = doc(store, "parent")
        assert (parent.get("children"), parent.get("alternates")) == (["child"], ["alternate"]), arrival
        assert "children" not in doc(store, "child") and "alternates" not in doc(store, "alternate"), arrival
        assert listed(store) == ["parent"], arrival
        assert listed(store, include_sub_sessions=True) == ["alternate", "child", "parent"], arrival
        page = store.ListSessions(pb.ListSessionsRequest(session_elements=pb.SessionElements(json=True)), timeout=10)
        assert [json.loads(s.json).get("children") for s in page.sessions] == [["child"]], arrival
        store.DeleteSessions(pb.DeleteSessionsRequest(identities=["parent", "child", "alternate"]), timeout=10)
        assert listed(store, include_sub_sessions=True) == []


@db
def test_sub_session_of_an_unknown_anchor_is_top_level(store):
    upsert(store, "orphan", U(set_child_of_refs=refs("guid:nobody")))
    assert listed(store) == ["orphan"]


# --- transactions and sequences --------------------------------------------------------------


@db
def test_failing_op_leaves_session_untouched(store):
    upsert(store, "s1", U(set_details=details(Driver="A")), U(set_folders=folders("f1")), create={"timestamp": ts(1)})
    before = get(store, "s1", json=True, folders=True, refs=True, data_bindings=True)
    code, message = status_of(
        lambda: upsert(
            store,
            "s1",
            U(update_details=details(Driver="B")),
            U(set_folders=folders("f2")),
            U(set_ref_anchors=refs("a")),
            U(set_quality=1.5),
            U(set_state=2),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("updates[3] set_quality")
    assert get(store, "s1", json=True, folders=True, refs=True, data_bindings=True) == before


@db
def test_failing_op_does_not_create_the_session(store):
    code, _ = status_of(lambda: upsert(store, "new", U(set_group="g"), U(set_state=3)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = status_of(lambda: get(store, "new"))
    assert code == grpc.StatusCode.NOT_FOUND


@db
def test_sequence_replay_is_skipped_silently(store):
    upsert(store, "s1", U(set_group="g5"), sequence=5)
    upsert(store, "s1", U(set_group="again-5"), sequence=5)
    upsert(store, "s1", U(set_group="g3"), sequence=3)
    assert doc(store, "s1")["group"] == "g5"
    upsert(store, "s1", U(set_group="g6"), sequence=6)
    assert doc(store, "s1")["group"] == "g6"
    upsert(store, "s1", U(set_group="unsequenced"))
    assert doc(store, "s1")["group"] == "unsequenced"
    upsert(store, "s1", U(set_group="g4"), sequence=4)
    assert doc(store, "s1")["group"] == "unsequenced"
    upsert(store, "s1", U(set_group="g0"), sequence=0)
    assert doc(store, "s1")["group"] == "unsequenced"


@db
def test_sequence_zero_counts_as_set(store):
    upsert(store, "s1", U(set_group="g0"), sequence=0)
    upsert(store, "s1", U(set_group="again"), sequence=0)
    assert doc(store, "s1")["group"] == "g0"


# --- client mistakes -------------------------------------------------------------------------

INVALID = {
    "quality_above_one": ("s1", [U(set_quality=1.01)], None, "quality"),
    "quality_below_zero": ("s1", [U(set_quality=-0.1)], None, "quality"),
    "quality_nan": ("s1", [U(set_quality=float("nan"))], None, "quality"),
    "unknown_state": ("s1", [U(set_state=3)], None, "state"),
    "unknown_create_state": ("s1", [], {"state": 5}, "state"),
    "malformed_details_json": ("s1", [U(set_details_json=details_json("{not json"))], None, "malformed"),
    "details_json_array": ("s1", [U(update_details_json=details_json("[1, 2]"))], None, "object"),
    "nested_detail_value": ("s1", [U(set_details_json=details_json({"a": {"b": 1}}))], None, "details.a"),
    "null_detail_value": ("s1", [U(update_details_json=details_json({"a": None}))], None, "null"),
    "list_detail_value": ("s1", [U(set_details_json=details_json({"a": [1]}, "G"))], None, "extDetails.G.a"),
    "empty_identity": ("", [U(set_state=2)], None, "identity"),
    "bad_timestamp": ("s1", [U(set_timestamp="yesterday")], None, "yesterday"),
    "bad_create_timestamp": ("s1", [], {"timestamp": "2024-13-01T00:00:00Z"}, "timestamp"),
    "time_range_reversed": ("s1", [U(set_time_range=pb.TimeRange(start_time=5, end_time=1))], None, "after"),
    "empty_identifier": ("s1", [U(set_identifier="")], None, "identifier"),
    "no_op": ("s1", [U()], None, "updates[0]"),
    "marker_without_id": ("s1", [U(set_markers=markers_map(Laps=[lap("")]))], None, "marker id"),
    "marker_bad_details_json": (
        "s1",
        [U(update_markers=markers_map(Laps=[lap("L", details_json="{")]))],
        None,
        "updates[0] update_markers",
    ),
    "marker_details_not_object": (
        "s1",
        [U(set_markers=markers_map(Laps=[lap("L", details_json="3")]))],
        None,
        "object",
    ),
    "marker_reversed": ("s1", [U(set_markers=markers_map(Laps=[lap("L", 9, 1)]))], None, "after"),
    "config_binding_without_identifier": (
        "s1",
        [U(set_config_bindings=config_bindings(**{"": 1}))],
        None,
        "identifier",
    ),
    "data_binding_without_identity": ("s1", [U(set_data_bindings=bindings(binding("")))], None, "identity"),
    "data_binding_channels_reversed": (
        "s1",
        [U(set_data_bindings=bindings(binding("d", channels=[(0, 5, 4)])))],
        None,
        "last_session_channel",
    ),
    "data_binding_reversed": ("s1", [U(update_data_bindings=bindings(binding("d", start=5, end=4)))], None, "after"),
    "empty_ref_uri": ("s1", [U(set_ref_anchors=refs(""))], None, "URI"),
    "type_too_long": ("s1", [U(set_type=wrappers_pb2.StringValue(value="t" * 300))], None, ""),
    "nul_in_identity": ("s\x001", [U(set_state=2)], None, ""),
    "nul_in_detail": ("s1", [U(set_details=details(Driver="a\x00b"))], None, ""),
    "nul_in_detail_json": ("s1", [U(set_details_json=details_json('{"Driver": "a\\u0000b"}'))], None, ""),
    "nul_in_group": ("s1", [U(set_group="g\x00")], None, ""),
}


@db
def test_client_mistakes_are_invalid_argument(store):
    # One test (one database flush) for every case; failures are collected and reported together.
    wrong = []
    for case, (identity, ops, create, fragment) in INVALID.items():
        code, message = status_of(lambda: upsert(store, identity, *ops, create=create))
        if code != grpc.StatusCode.INVALID_ARGUMENT or fragment not in message:
            wrong.append(f"{case}: {code.name} {message!r}")
    assert wrong == []
    assert listed(store, include_sub_sessions=True) == []  # nothing was created


# --- reading ---------------------------------------------------------------------------------


@db
def test_get_session_elements(store):
    upsert(
        store,
        "s1",
        U(set_details=details(Driver="A")),
        U(set_details_json=details_json({"Wing": 2}, "CarSetup")),
        U(set_data_bindings=bindings(binding("d1", channels=[(0, 0, 3)]))),
        U(set_folders=folders("f1", "f2")),
        U(set_ref_anchors=refs("guid:1")),
        U(set_child_of_refs=refs("guid:other")),
        U(set_alternate_of_refs=refs("guid:alt")),
        create={"timestamp": ts(1), "state": 2},
    )
    bare = get(store, "s1")
    assert bare == pb.Session(identity="s1")

    body = json.loads(get(store, "s1", json=True).json)
    assert body == {
        "identity": "s1",
        "state": "open",
        "timestamp": ts(1),
        "identifier": "s1",
        "details": {"Driver": "A"},
    }
    assert json.loads(get(store, "s1", json=True, json_properties=["extDetails.CarSetup"]).json)["extDetails"] == {
        "CarSetup": {"Wing": 2}
    }
    assert get(store, "s1", json_properties=["extDetails"]).json == ""  # properties only matter with json

    heartbeat = get(store, "s1", heartbeat_utc=True)
    assert heartbeat.json == "" and heartbeat.heartbeat_utc.endswith("+00:00")
    assert abs(time.time() - _parse_iso(heartbeat.heartbeat_utc)) < 60

    bound = get(store, "s1", data_bindings=True)
    assert [b.key.identity for b in bound.data_bindings] == ["d1"] and not bound.folders

    assert list(get(store, "s1", folders=True).folders) == ["f1", "f2"]

    linked = get(store, "s1", refs=True)
    assert (list(linked.ref_anchors), list(linked.child_of_refs), list(linked.alternate_of_refs)) == (
        ["guid:1"],
        ["guid:other"],
        ["guid:alt"],
    )
    assert not linked.data_bindings and not linked.folders and not linked.json

    everything = get(store, "s1", json=True, heartbeat_utc=True, data_bindings=True, folders=True, refs=True)
    assert everything.json and everything.heartbeat_utc and everything.data_bindings and everything.folders
    assert everything.ref_anchors


def _parse_iso(text):
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


@db
def test_get_missing_session_is_not_found(store):
    code, message = status_of(lambda: get(store, "nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in message


@db
def test_delete_sessions_ignores_missing(store):
    upsert(store, "a")
    upsert(store, "b")
    store.DeleteSessions(pb.DeleteSessionsRequest(identities=["a", "missing"]), timeout=10)
    assert listed(store) == ["b"]
    store.DeleteSessions(pb.DeleteSessionsRequest(identities=[]), timeout=10)
    assert listed(store) == ["b"]


@pytest.fixture
def five(store):
    """Five sessions s1..s5 (timestamps ascending) with typed details and qualities."""
    for n in range(1, 6):
        upsert(
            store,
            f"s{n}",
            U(set_details_json=details_json({"Lap": n * 10 % 7, "Driver": "AB"[n % 2]})),
            U(set_quality=n / 10),
            U(set_state=2 if n % 2 else 4),
            create={"timestamp": ts(n)},
        )


@db
def test_list_sessions_sorts_and_pages(store, five):
    assert listed(store) == ["s5", "s4", "s3", "s2", "s1"]  # timestamp descending by default
    assert listed(store, sorts=["timestamp:asc"]) == ["s1", "s2", "s3", "s4", "s5"]
    # Lap values: s1=3, s2=6, s3=2, s4=5, s5=1 (numeric sort).
    assert listed(store, sorts=["details.Lap:asc"]) == ["s5", "s3", "s1", "s4", "s2"]
    assert listed(store, sorts=["details.Driver:asc", "quality:desc"]) == ["s4", "s2", "s5", "s3", "s1"]
    assert listed(store, sorts=["no.such.property:asc"]) == ["s5", "s4", "s3", "s2", "s1"]
    assert listed(store, page_size=2) == ["s5", "s4"]
    assert listed(store, page_size=2, page_index=1) == ["s3", "s2"]
    assert listed(store, page_size=2, page_index=2) == ["s1"]
    assert listed(store, page_size=2, page_index=3) == []
    assert listed(store, page_size=0, page_index=0) == ["s5", "s4", "s3", "s2", "s1"]  # 0 = unset


@db
def test_list_sessions_query(store, five):
    assert listed(store, query='{"details.Driver": "A"}') == ["s4", "s2"]
    assert listed(store, query='{"state": "open", "quality": {"$gte": 0.3}}') == ["s5", "s3"]
    assert listed(store, query='{"$or": [{"identity": "s1"}, {"details.Lap": {"$in": [5, 6]}}]}') == ["s4", "s2", "s1"]
    assert listed(store, query="  ") == ["s5", "s4", "s3", "s2", "s1"]


@db
def test_bad_query_is_invalid_argument(store, five):
    for query in ("{bad json", '{"$xor": []}', '{"quality": {"$gt": [1]}}', "[1]", '{"details.Lap": {"$in": 3}}'):
        code, message = status_of(lambda: listed(store, query=query))
        assert (code, bool(message)) == (grpc.StatusCode.INVALID_ARGUMENT, True), query


@db
def test_bad_paging_is_invalid_argument(store):
    code, _ = status_of(lambda: listed(store, page_index=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = status_of(lambda: listed(store, page_size=10**6))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@db
def test_list_sessions_elements(store):
    upsert(store, "s1", U(set_folders=folders("f")), U(set_ref_anchors=refs("a")), create={"timestamp": ts(1)})
    upsert(
        store,
        "s2",
        U(set_data_bindings=bindings(binding("d"))),
        U(set_child_of_refs=refs("a")),
        create={"timestamp": ts(2)},
    )
    response = store.ListSessions(
        pb.ListSessionsRequest(
            include_sub_sessions=True,
            session_elements=pb.SessionElements(
                json=True, heartbeat_utc=True, data_bindings=True, folders=True, refs=True
            ),
        ),
        timeout=10,
    )
    s2, s1 = response.sessions
    assert json.loads(s1.json)["children"] == ["s2"]
    assert list(s1.folders) == ["f"] and list(s1.ref_anchors) == ["a"] and not s1.data_bindings
    assert list(s2.folders) == [""] and list(s2.child_of_refs) == ["a"]
    assert [b.key.identity for b in s2.data_bindings] == ["d"]
    assert s1.heartbeat_utc and s2.heartbeat_utc
    plain = store.ListSessions(pb.ListSessionsRequest(), timeout=10)
    assert [s for s in plain.sessions] == [pb.Session(identity="s1")]


# --- metamodel -------------------------------------------------------------------------------


@db
def test_session_metamodel(store, five):
    upsert(store, "s1", U(set_details=details("CarSetup", Wing="2")), U(set_folders=folders("f")))
    model = json.loads(store.GetSessionMetamodel(pb.GetSessionMetamodelRequest(), timeout=10).metamodel_json)
    assert model["details"]["Lap"]["type"] == "integer"
    assert model["details"]["Driver"]["constraints"]["values"] == ["A", "B"]
    assert model["quality"]["constraints"] == {"minimum": 0.1, "maximum": 0.5}
    assert model["extDetails"] == {"CarSetup": {"label": "CarSetup", "properties": {}}}

    scoped = json.loads(
        store.GetSessionMetamodel(
            pb.GetSessionMetamodelRequest(folder_subtree="f", json_properties=["extDetails.CarSetup"]), timeout=10
        ).metamodel_json
    )
    assert scoped["quality"]["constraints"] == {"minimum": 0.1, "maximum": 0.1}
    assert scoped["extDetails"]["CarSetup"]["properties"]["Wing"]["constraints"]["values"] == ["2"]


@db
def test_query_session_metamodel(store, five):
    upsert(store, "s1", U(set_details=details("CarSetup", RideHeight="30")))
    response = store.QuerySessionMetamodel(pb.QuerySessionMetamodelRequest(partial_match="ride"), timeout=10)
    assert [(p.id, p.label, p.description) for p in response.property_summaries] == [
        ("extDetails.CarSetup.RideHeight", "RideHeight", "CarSetup (extended details)")
    ]
    ids = [p.id for p in store.QuerySessionMetamodel(pb.QuerySessionMetamodelRequest(), timeout=10).property_summaries]
    assert {"details.Driver", "details.Lap", "identifier", "state"} <= set(ids)
    put_folder(store, "empty")
    scoped = store.QuerySessionMetamodel(
        pb.QuerySessionMetamodelRequest(partial_match="details.", folder_subtree="empty"), timeout=10
    )
    assert list(scoped.property_summaries) == []


@db
def test_metamodel_of_missing_folder_is_empty(store, five):
    scoped = store.QuerySessionMetamodel(
        pb.QuerySessionMetamodelRequest(partial_match="details.", folder_subtree="missing-folder"), timeout=10
    )
    assert list(scoped.property_summaries) == []
    model = json.loads(
        store.GetSessionMetamodel(
            pb.GetSessionMetamodelRequest(folder_subtree="missing-folder"), timeout=10
        ).metamodel_json
    )
    assert model["details"] == {}
