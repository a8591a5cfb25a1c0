"""Rules the Session Service alone judges, for every adapter: errors that name their field, channel bindings,
checks that keep nothing, the admin's batches, and related sessions listed one way."""

import grpc
import pytest
from rta.toolkit.api import session_service_pb2 as pb
from rta.toolkit.api import session_service_pb2_grpc as pb_grpc

from rta_core.errors import InvalidArgument
from sessions_app.models import ROOT_FOLDER, DataBinding, FolderLink, Session
from sessions_app.services import folders, listing, updates
from sessions_app.services.updates import create_or_update_session
from tests.factories import make_session
from tests.grpc_helpers import grpc_channel, grpc_server  # noqa: F401  (fixtures)


def refused(identity, *ops, create=None):
    with pytest.raises(InvalidArgument) as info:
        create_or_update_session(identity, list(ops), create=create)
    return info.value


def binding(*channel_bindings):
    return {"source": "car", "identity": "stream-1", "channel_bindings": list(channel_bindings)}


# --- errors name the field they concern ------------------------------------------------------


@pytest.mark.django_db
def test_errors_name_the_property_or_the_item_they_concern():
    make_session("s")
    cases = [
        (("set_time_range", (20, 10)), "end_time"),
        (("set_time_range", (None, 10)), "start_time"),
        (("set_quality", 2.0), "quality"),
        (("set_state", 99), "state"),
        (("set_timestamp", "yesterday"), "timestamp"),
        (("set_identifier", ""), "identifier"),
        (("set_details", {"details": {"a": None}}), "details"),
        (("set_details", {"category": "Setup", "details": {"a": [1]}}), "ext_details"),
        (("update_markers", [{"id": "ok"}, {"id": "bad", "start_time": 5, "end_time": 1}]), "markers[1].end_time"),
        (("update_markers", [{"id": "m", "details": [1]}]), "markers[0].details"),
        (("update_markers", [{"id": "m"}, {"id": "m"}]), "markers[1].id"),
        (("update_config_bindings", [{"identifier": "c", "channel_offset": -1}]), "config_bindings[0].channel_offset"),
        (
            ("update_data_bindings", [{"identity": "d", "session_start_time": 9, "session_end_time": 1}]),
            "data_bindings[0].session_end_time",
        ),
        (("update_data_bindings", [{"identity": ""}]), "data_bindings[0].identity"),
    ]
    for op, field in cases:
        error = refused("s", ("update_heartbeat", None), op)
        assert error.field == field, (op, error.message)
        assert error.message.startswith(f"updates[1] {op[0]}: ")
    assert refused("new", create={"state": 99}).field == "state"


# --- channel bindings: one rule, in the service ------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "channel_bindings, message",
    [
        ([{"first_data_channel": -1}], "first_data_channel must be a non-negative integer"),
        ([{"first_session_channel": -5, "last_session_channel": 3}], "first_session_channel must be a non-negative"),
        ([{"last_session_channel": True}], "last_session_channel must be a non-negative integer"),
        ([{"first_data_channel": "7"}], "first_data_channel must be a non-negative integer"),
        ([{"last_session_channel": 1 << 32}], "last_session_channel must be a non-negative integer below 2^32"),
        ([{"first_data_channel": 0, "first_channel": 1}], "unknown keys 'first_channel'"),
        ([7], "channel binding 0 must be an object"),
        ([{"first_session_channel": 10, "last_session_channel": 9}], "last_session_channel 9 is below"),
    ],
)
def test_channel_bindings_are_refused_unless_well_formed(channel_bindings, message):
    make_session("b")
    for op in ("set_data_bindings", "update_data_bindings"):
        error = refused("b", (op, [binding({"last_session_channel": 1}), binding(*channel_bindings)]))
        assert message in error.message and error.field == "data_bindings[1].channel_bindings"
    assert not DataBinding.objects.filter(session_id="b").exists()


@pytest.mark.django_db
def test_channel_bindings_given_as_anything_but_a_list_are_refused():
    make_session("b")
    error = refused("b", ("set_data_bindings", [{"identity": "d", "channel_bindings": {"first_data_channel": 0}}]))
    assert "channel bindings must be a list" in error.message


@pytest.mark.django_db
def test_well_formed_channel_bindings_are_stored_with_missing_keys_as_zero():
    make_session(
        "b",
        data_bindings=[
            binding({"first_session_channel": 10, "last_session_channel": 19}, {}, {"first_data_channel": 2**32 - 1})
        ],
    )
    stored = DataBinding.objects.get(session_id="b").channel_bindings
    assert stored == [
        {"first_data_channel": 0, "first_session_channel": 10, "last_session_channel": 19},
        {"first_data_channel": 0, "first_session_channel": 0, "last_session_channel": 0},
        {"first_data_channel": 2**32 - 1, "first_session_channel": 0, "last_session_channel": 0},
    ]


@pytest.fixture
def store(grpc_channel):  # noqa: F811
    return pb_grpc.SessionStoreStub(grpc_channel)


@pytest.mark.django_db(transaction=True)
def test_grpc_refuses_a_reversed_channel_range_with_the_service_message(store):
    reversed_range = pb.DataBinding(
        key=pb.DataBindingKey(identity="stream-1"),
        data_channel_bindings=[pb.DataChannelBinding(first_session_channel=10, last_session_channel=9)],
    )
    update = pb.SessionUpdate(set_data_bindings=pb.SessionUpdate.DataBindingsList(data_bindings=[reversed_range]))
    with pytest.raises(grpc.RpcError) as info:
        store.CreateOrUpdateSession(pb.CreateOrUpdateSessionRequest(identity="g", updates=[update]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "last_session_channel 9 is below first_session_channel 10" in info.value.details()
    assert not Session.objects.filter(identity="g").exists()


# --- checks that keep nothing, and the admin's batches -----------------------------------------


@pytest.mark.django_db
def test_check_session_update_raises_what_the_update_would_and_keeps_nothing():
    updates.check_session_update([("set_details", {"details": {"a": 1}})], create={"state": 2})
    with pytest.raises(InvalidArgument) as info:
        updates.check_session_update([("set_quality", 3)])
    assert info.value.field == "quality"
    with pytest.raises(InvalidArgument, match="malformed value"):
        updates.check_session_update([("update_markers", [["not", "an", "object"]])])
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_check_folder_raises_what_put_folder_would_and_keeps_nothing():
    folders.put_folder("", "a", "A")
    folders.put_folder("a", "b", "B")
    folders.check_folder("", "c", "C")
    with pytest.raises(InvalidArgument, match="its own sub-tree"):
        folders.check_folder("b", "a")
    with pytest.raises(InvalidArgument, match="does not exist"):
        folders.check_folder("missing", "c")
    assert set(folders.folder_tree()) == {ROOT_FOLDER, "a", "b"}


@pytest.mark.django_db
def test_close_sessions_closes_only_sessions_not_already_closed():
    make_session("open", state="open")
    make_session("closed", state="closed")
    make_session("failed", state="failed")
    assert updates.close_sessions(["open", "closed", "failed", "missing"]) == (1, 2)
    states = dict(Session.objects.values_list("identity", "state"))
    assert states == {"open": 4, "closed": 4, "failed": states["failed"]} and states["failed"] != 4


@pytest.mark.django_db
def test_link_sessions_links_or_moves_into_a_folder():
    folders.put_folder("", "a", "A")
    make_session("s", folders=["x"])
    assert folders.link_sessions(["s"], "a") == 1
    assert set(FolderLink.objects.filter(session_id="s").values_list("folder_id", flat=True)) == {"x", "a"}
    folders.link_sessions(["s"], "a", move=True)
    assert list(FolderLink.objects.filter(session_id="s").values_list("folder_id", flat=True)) == ["a"]


@pytest.mark.django_db
def test_folder_tree_is_depth_first_with_paths():
    folders.put_folder("", "b", "Beta")
    folders.put_folder("", "a", "alpha")
    folders.put_folder("b", "b1", "One")
    tree = folders.folder_tree()
    assert list(tree) == [ROOT_FOLDER, "a", "b", "b1"]
    assert (tree["b1"].depth, tree["b1"].path, tree[ROOT_FOLDER].depth) == (2, "Beta / One", 0)


# --- related sessions: one function for REST, gRPC and the admin -------------------------------


@pytest.mark.django_db
def test_related_sessions_in_timestamp_order_with_parents_on_request():
    make_session("race", anchors=["guid:race"], timestamp="2024-05-20T14:00:00Z")
    make_session("practice", anchors=["guid:practice"], timestamp="2024-05-19T10:00:00Z")
    make_session("z-early", child_of=["guid:race"], timestamp="2024-05-20T13:00:00Z")
    make_session("a-late", child_of=["guid:race"], timestamp="2024-05-20T15:00:00Z")
    make_session("alt", alternate_of=["guid:race"], child_of=["guid:practice"], timestamp="2024-05-21T00:00:00Z")
    related = listing.related_sessions(["race", "alt"])
    assert related["race"] == {"children": ["z-early", "a-late"], "alternates": ["alt"]}
    assert related.get("alt") is None
    with_parents = listing.related_sessions(["race", "alt"], parents=True)
    assert with_parents["alt"] == {"children": [], "alternates": [], "parents": ["practice", "race"]}
    assert with_parents["race"]["parents"] == []
