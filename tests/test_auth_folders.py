"""Folder-scoped access (spec §15, ``sessions_app.services.scope``): a token carrying the folders claim sees
only the sessions in those folders' sub-trees, in lists (counts and paging), queries, the metamodel, gets,
data and live streams, and writes only there.

Checked twice: through the services with ``Access`` objects, and through the real interfaces (REST, gRPC,
WebSocket) with tokens from an independent issuer carrying the claim (RTA_AUTH_FOLDERS_CLAIM).

The tree::

    (root)        r1
    ├── teamA     a1, a3 (anchor pa), a3-child (child of pa), a4-orphan (child of pb), ab
    │   └── runs  a2
    ├── teamB     b1 (anchor pb), b3-child (child of pa), ab, b-live (open)
    └── shared    (empty)
"""

import grpc
import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from google.protobuf import wrappers_pb2
from rta.model import data_pb2
from rta.toolkit.api import chunk_service_pb2 as cpb
from rta.toolkit.api import chunk_service_pb2_grpc as cgrpc
from rta.toolkit.api import session_service_pb2 as spb
from rta.toolkit.api import session_service_pb2_grpc as sgrpc

from data_app.services.bindings import read_session_data, session_bindings
from data_app.store.writer import ChunkWriter
from rta_core.access import Access
from rta_core.errors import NotFound, PermissionDenied
from rta_kit import wire
from sessions_app.models import Folder, Session
from sessions_app.query.compiler import parse_query
from sessions_app.services import folders, listing, metamodel, metamodel_cache, scope, updates
from tests.auth_issuer import AUDIENCE, Issuer
from tests.factories import make_session
from tests.grpc_helpers import running_server

pytestmark = pytest.mark.django_db

CLAIM = "rta_folders"
FULL = Access.ANONYMOUS_FULL
TEAM_A = Access(can_read=True, can_write=True, folders=("teamA",))
RUNS = Access(can_read=True, can_write=True, folders=("teamA/runs",))
TEAM_B = Access(can_read=True, can_write=True, folders=("teamB",))
NOTHING = Access(can_read=True, can_write=True, folders=())

# Listed without sub-sessions, newest first.
LISTED = {
    FULL: ["ab", "r1", "b1", "a3", "a2", "a1"],
    # a4-orphan's parent (b1) is outside teamA: it is listed itself; a3-child stays under a3.
    TEAM_A: ["ab", "a4-orphan", "a3", "a2", "a1"],
    RUNS: ["a2"],
    TEAM_B: ["b-live", "ab", "b1", "b3-child"],
    NOTHING: [],
}
LIVE_ONLY = {"b-live"}  # made by the tests that need it


def build_tree(live=False):
    for identity, parent in (("teamA", ""), ("teamA/runs", "teamA"), ("teamB", ""), ("shared", "")):
        folders.put_folder(parent, identity, label=identity)
    ts = "2024-01-01T00:00:{:02d}Z".format
    make_session("a1", timestamp=ts(1), folders=["teamA"], details={"Driver": "Norris", "Run": 1})
    make_session("a1", ext_details={"Car": {"Wing": "low"}})
    make_session("a2", timestamp=ts(2), folders=["teamA/runs"], details={"Driver": "Piastri", "Run": 2})
    make_session("a3", timestamp=ts(3), folders=["teamA"], details={"Driver": "Norris", "Run": 3}, anchors=["pa"])
    make_session("a3-child", timestamp=ts(4), folders=["teamA"], child_of=["pa"])
    make_session("b3-child", timestamp=ts(5), folders=["teamB"], child_of=["pa"])
    make_session("b1", timestamp=ts(6), folders=["teamB"], details={"Driver": "Secret", "BOnly": 7}, anchors=["pb"])
    make_session("b1", ext_details={"Hidden": {"K": "v"}})
    make_session("a4-orphan", timestamp=ts(7), folders=["teamA"], child_of=["pb"])
    make_session("r1", timestamp=ts(8), details={"Driver": "Root"})
    make_session("ab", timestamp=ts(9), folders=["teamA", "teamB"], details={"Driver": "Both"})
    if live:
        make_session("b-live", timestamp=ts(10), folders=["teamB"], state="open")
        make_session("a-live", timestamp=ts(11), folders=["teamA"], state="open")


@pytest.fixture
def tree():
    build_tree()


def identities(sessions):
    return [s.identity for s in sessions]


# --- the services, with Access objects ----------------------------------------------------------------


@pytest.mark.parametrize("access", list(LISTED), ids=["full", "teamA", "runs", "teamB", "nothing"])
def test_lists_hold_exactly_the_sessions_in_scope(tree, access):
    expected = [i for i in LISTED[access] if i not in LIVE_ONLY]
    assert identities(listing.list_sessions(access=access)) == expected


def test_pages_are_full_and_counts_right_under_a_folder_restriction(tree):
    pages = [identities(listing.list_sessions(page_index=i, page_size=2, access=TEAM_A)) for i in range(4)]
    assert pages == [["ab", "a4-orphan"], ["a3", "a2"], ["a1"], []]


def test_queries_folder_parameters_and_sub_sessions_stay_in_scope(tree):
    norris_or_secret = parse_query('{"details.Driver": {"$in": ["Norris", "Secret"]}}')
    assert identities(listing.list_sessions(query=norris_or_secret, access=TEAM_A)) == ["a3", "a1"]
    assert identities(listing.list_sessions(query=norris_or_secret, access=FULL)) == ["b1", "a3", "a1"]
    # A folder outside the scope lists nothing; one above it lists the scope only.
    assert identities(listing.list_sessions(folder="teamB", access=TEAM_A)) == ["ab"]  # in both folders
    assert identities(listing.list_sessions(folder="teamA", access=RUNS)) == ["a2"]
    subs = identities(listing.list_sessions(include_sub_sessions=True, access=TEAM_A))
    assert set(subs) == {"ab", "a4-orphan", "a3-child", "a3", "a2", "a1"}


def test_a_session_outside_the_scope_is_not_found(tree):
    assert listing.get_session("a1", access=TEAM_A).identity == "a1"
    for access, identity in ((TEAM_A, "b1"), (TEAM_A, "r1"), (RUNS, "a1"), (NOTHING, "a1")):
        with pytest.raises(NotFound) as info:
            listing.get_session(identity, access=access)
        assert "not found" in info.value.message
    assert listing.get_session("b1", access=FULL).identity == "b1"


def test_related_sessions_outside_the_scope_are_not_named(tree):
    assert listing.related_sessions(["a3"], access=FULL)["a3"]["children"] == ["a3-child", "b3-child"]
    assert listing.related_sessions(["a3"], access=TEAM_A)["a3"]["children"] == ["a3-child"]
    parents = listing.related_sessions(["a4-orphan"], parents=True, access=TEAM_A)
    assert parents.get("a4-orphan") is None or parents["a4-orphan"]["parents"] == []


def _detail_values(model):
    return {k: d["constraints"]["values"] for k, d in model["details"].items()}


def test_the_metamodel_holds_values_of_sessions_in_scope_only(tree):
    full = _detail_values(metamodel.metamodel(access=FULL))
    assert full["Driver"] == ["Both", "Norris", "Piastri", "Root", "Secret"] and "BOnly" in full
    team_a = metamodel.metamodel(props=["extDetails"], access=TEAM_A)
    assert _detail_values(team_a) == {"Driver": ["Both", "Norris", "Piastri"], "Run": [1, 2, 3]}
    assert set(team_a["extDetails"]) == {"Car"}
    nothing = metamodel.metamodel(access=NOTHING)
    assert nothing["details"] == {} and nothing["extDetails"] == {}
    assert "constraints" not in nothing["timestamp"]


def test_property_summaries_name_properties_of_sessions_in_scope_only(tree):
    full = {p["id"] for p in metamodel.property_summaries(access=FULL)}
    team_a = {p["id"] for p in metamodel.property_summaries(access=TEAM_A)}
    assert {"details.BOnly", "extDetails.Hidden.K"} <= full
    assert {"details.Driver", "details.Run", "extDetails.Car.Wing"} <= team_a
    assert not {"details.BOnly", "extDetails.Hidden.K"} & team_a


def test_cached_metamodel_answers_never_cross_scopes(postgres, tree):
    metamodel_cache.clear()
    full = _detail_values(metamodel.metamodel(access=FULL))
    computed = metamodel_cache.stats["computed"]
    team_a = _detail_values(metamodel.metamodel(access=TEAM_A))
    assert metamodel_cache.stats["computed"] > computed  # its own entry, computed for its scope
    assert "Secret" not in team_a["Driver"] and "Secret" in full["Driver"]
    reused = metamodel_cache.stats["rows"]
    assert _detail_values(metamodel.metamodel(access=TEAM_A)) == team_a
    assert _detail_values(metamodel.metamodel(access=FULL)) == full
    assert metamodel_cache.stats["rows"] > reused  # each scope reuses its own answer


def test_folders_on_the_path_to_and_inside_the_scope_are_listed(tree):
    def children(parent, access):
        return [(f.identity, f.has_children) for f in folders.child_folders(parent, access=access)]

    assert {i for i, _ in children("", FULL)} == {"teamA", "teamB", "shared"}
    assert children("", TEAM_A) == [("teamA", True)]
    assert children("teamA", TEAM_A) == [("teamA/runs", False)]
    assert children("teamB", TEAM_A) == []
    # teamA is on the path to runs: listed, with only runs below it.
    assert children("", RUNS) == [("teamA", True)]
    assert children("teamA", RUNS) == [("teamA/runs", False)]
    assert children("", NOTHING) == []


def test_session_data_outside_the_scope_is_not_found(tree):
    assert session_bindings("a1", access=TEAM_A) == []
    with pytest.raises(NotFound):
        session_bindings("b1", access=TEAM_A)
    with pytest.raises(NotFound):
        read_session_data("b1", "events", access=TEAM_A)
    read_session_data("a1", "events", access=TEAM_A).close()


def test_data_identities_in_scope(tree):
    make_session("a1", data_bindings=[{"source": "s", "identity": "raw-a"}])
    assert scope.data_identity_in_scope(TEAM_A, "a1") and scope.data_identity_in_scope(TEAM_A, "raw-a")
    assert not scope.data_identity_in_scope(TEAM_A, "b1")
    assert not scope.data_identity_in_scope(TEAM_A, "unbound")
    assert not scope.data_identity_in_scope(TEAM_A, "bad\x00identity")
    assert scope.data_identity_in_scope(FULL, "unbound")


def test_invalid_folders_in_a_claim_match_nothing(tree):
    odd = Access(can_read=True, can_write=False, folders=("bad\x00folder", "teamA/runs"))
    assert identities(listing.list_sessions(access=odd)) == ["a2"]
    assert identities(listing.list_sessions(access=Access(True, False, ("bad\x00folder",)))) == []


# --- writes --------------------------------------------------------------------------------------------


def test_a_restricted_token_updates_sessions_in_its_folders_only(tree):
    updates.create_or_update_session("a1", [("set_type", "Race")], access=TEAM_A)
    assert Session.objects.get(identity="a1").type == "Race"
    with pytest.raises(PermissionDenied) as info:
        updates.create_or_update_session("b1", [("set_type", "Race")], access=TEAM_A)
    assert "outside the token's folders" in info.value.message
    assert Session.objects.get(identity="b1").type is None


def test_a_restricted_token_must_file_a_new_session_into_its_folders(tree):
    with pytest.raises(PermissionDenied) as info:
        updates.create_or_update_session("new", [("set_type", "Race")], access=TEAM_A)
    assert "set_folders" in info.value.message
    assert not Session.objects.filter(identity="new").exists()
    updates.create_or_update_session("new", [("set_folders", ["teamA/runs"])], access=TEAM_A)
    assert listing.get_session("new", access=RUNS).identity == "new"


def test_a_restricted_token_cannot_file_sessions_outside_its_folders(tree):
    for ops in ([("set_folders", ["teamB"])], [("update_folders", ["missing"])], [("update_folders", [""])]):
        with pytest.raises(PermissionDenied):
            updates.create_or_update_session("a1", ops, access=TEAM_A)
    assert not Folder.objects.filter(identity="missing").exists()
    # Unlinking it from teamA would send it to the root, out of scope: refused, nothing changed.
    with pytest.raises(PermissionDenied):
        updates.create_or_update_session("a1", [("delete_folders", ["teamA"])], access=TEAM_A)
    assert listing.get_session("a1", access=TEAM_A).identity == "a1"
    updates.create_or_update_session("a1", [("set_folders", ["teamA/runs"])], access=TEAM_A)
    assert listing.get_session("a1", access=RUNS).identity == "a1"


def test_a_restricted_token_deletes_sessions_in_its_folders_only(tree):
    assert updates.delete_sessions(["a1", "b1", "r1", "absent"], access=TEAM_A) == 1
    assert set(Session.objects.filter(identity__in=["a1", "b1", "r1"]).values_list("identity", flat=True)) == {
        "b1",
        "r1",
    }
    assert updates.delete_sessions(["b1"], access=NOTHING) == 0


def test_a_restricted_token_changes_folders_inside_its_folders_only(tree):
    folders.put_folder("teamA", "teamA/new", label="New", access=TEAM_A)
    folders.put_folder("teamA/runs", "teamA/new", label="Moved", access=TEAM_A)
    assert Folder.objects.get(identity="teamA/new").parent_id == "teamA/runs"
    for parent, identity in (("", "elsewhere"), ("teamA", "teamA"), ("teamA", "teamB"), ("teamB", "x")):
        with pytest.raises(PermissionDenied):
            folders.put_folder(parent, identity, access=TEAM_A)
    assert not Folder.objects.filter(identity__in=["elsewhere", "x"]).exists()
    assert Folder.objects.get(identity="teamB").parent_id == ""
    with pytest.raises(PermissionDenied):
        folders.delete_folders(["teamA"], access=TEAM_A)
    assert folders.delete_folders(["teamB", "teamA/new"], access=TEAM_A) == 1  # teamB: as if absent
    assert Folder.objects.filter(identity="teamB").exists()


# --- the interfaces, with tokens carrying the folders claim -------------------------------------------


@pytest.fixture(scope="module")
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture
def auth_on(issuer):
    with override_settings(
        RTA_AUTH_ENABLED=True, RTA_AUTH_AUTHORITY=issuer.url, RTA_AUTH_AUDIENCE=AUDIENCE, RTA_AUTH_FOLDERS_CLAIM=CLAIM
    ):
        yield issuer


def bearer(issuer, folders=None, scopes="rta.read"):
    claims = {} if folders is None else {CLAIM: folders}
    return {"HTTP_AUTHORIZATION": f"Bearer {issuer.token(scopes, **claims)}"}


def listed(client, headers, **params):
    response = client.get("/rta/v2/sessions", params, **headers)
    assert response.status_code == 200, response.content
    return [s["identity"] for s in response.json()["sessions"]]


def test_rest_lists_and_pages_only_the_tokens_folders(client, auth_on, tree):
    team_a = bearer(auth_on, ["teamA"])
    assert listed(client, team_a) == LISTED[TEAM_A]
    pages = [listed(client, team_a, pageIndex=i, pageSize=2) for i in range(4)]
    assert pages == [["ab", "a4-orphan"], ["a3", "a2"], ["a1"], []]
    assert listed(client, bearer(auth_on, "teamA/runs")) == ["a2"]  # a single folder as a string
    assert listed(client, bearer(auth_on)) == LISTED[FULL]  # no claim: not restricted
    assert listed(client, bearer(auth_on, [])) == []  # an empty claim: nothing


def test_rest_query_get_and_relations_are_scoped(client, auth_on, tree):
    team_a = bearer(auth_on, ["teamA"])
    response = client.post("/rta/v2/sessions", {"query": '{"details.Driver": {"$in": ["Norris", "Secret"]}}'}, **team_a)
    assert [s["identity"] for s in response.json()["sessions"]] == ["a3", "a1"]
    a3 = client.get("/rta/v2/sessions/a3", **team_a)
    assert a3.status_code == 200 and a3.json()["children"] == ["a3-child"]
    listed_a3 = next(s for s in client.get("/rta/v2/sessions", **team_a).json()["sessions"] if s["identity"] == "a3")
    assert listed_a3["children"] == ["a3-child"]
    for path in ("/rta/v2/sessions/b1", "/rta/v2/sessions/r1"):
        response = client.get(path, **team_a)
        assert response.status_code == 404 and set(response.json()) == {"error"}
    assert client.get("/rta/v2/sessions/b1", **bearer(auth_on)).status_code == 200
    assert client.get("/rta/v2/sessions/a1", **bearer(auth_on, [])).status_code == 404


def test_rest_metamodel_and_folders_are_scoped(client, auth_on, tree):
    team_a = bearer(auth_on, ["teamA"])
    model = client.get("/rta/v2/session-metamodel", {"prop": "extDetails"}, **team_a).json()
    assert _detail_values(model) == {"Driver": ["Both", "Norris", "Piastri"], "Run": [1, 2, 3]}
    assert set(model["extDetails"]) == {"Car"}
    properties = {p["id"] for p in client.get("/rta/v2/session-metamodel/properties", **team_a).json()}
    assert "details.Driver" in properties and "details.BOnly" not in properties
    assert _detail_values(client.get("/rta/v2/session-metamodel", **bearer(auth_on, [])).json()) == {}
    roots = client.get("/rta/v2/session-folders/", **team_a).json()
    assert [(f["identity"], f["hasChildren"]) for f in roots] == [("teamA", True)]
    assert client.get("/rta/v2/session-folders/teamB", **team_a).json() == []
    assert {f["identity"] for f in client.get("/rta/v2/session-folders/", **bearer(auth_on)).json()} == {
        "teamA",
        "teamB",
        "shared",
    }


def _write_events(identity):
    writer = ChunkWriter(identity)
    writer.add("events", data_pb2.Event(event_definition_id=1, app_name="app", timestamp=10**18, status_text="e"))
    writer.flush()


def test_rest_data_outside_the_scope_is_404(client, auth_on, tree):
    for identity in ("a1", "b1"):
        _write_events(identity)
    team_a = bearer(auth_on, ["teamA"])
    accept = {"HTTP_ACCEPT": wire.MEDIA_TYPE}
    inside = client.get("/rta/v2/sessions/a1/data/events", **team_a, **accept)
    assert inside.status_code == 200
    assert len(wire.read_chunks(b"".join(inside.streaming_content))) == 1
    outside = client.get("/rta/v2/sessions/b1/data/events", **team_a, **accept)
    assert outside.status_code == 404 and "not found" in outside.json()["error"]
    assert client.head("/rta/v2/sessions/b1/data/periodic/1", **team_a, **accept).status_code == 404
    assert client.get("/rta/v2/sessions/b1/data/events", **bearer(auth_on), **accept).status_code == 200


# --- gRPC ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_auth(django_db_setup, django_db_blocker, issuer):
    with override_settings(
        RTA_AUTH_ENABLED=True, RTA_AUTH_AUTHORITY=issuer.url, RTA_AUTH_AUDIENCE=AUDIENCE, RTA_AUTH_FOLDERS_CLAIM=CLAIM
    ):
        with running_server(django_db_blocker) as (_, port):
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=10)
            try:
                yield channel
            finally:
                channel.close()


def metadata(issuer, folders=None, scopes="rta.read rta.write"):
    claims = {} if folders is None else {CLAIM: folders}
    return (("authorization", f"Bearer {issuer.token(scopes, **claims)}"),)


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


@pytest.mark.django_db(transaction=True)
def test_grpc_sessions_are_scoped(grpc_auth, issuer):
    build_tree()
    stub = sgrpc.SessionStoreStub(grpc_auth)
    team_a = metadata(issuer, ["teamA"])

    def listed(md, **fields):
        reply = stub.ListSessions(spb.ListSessionsRequest(**fields), metadata=md, timeout=30)
        return [s.identity for s in reply.sessions]

    assert listed(team_a) == LISTED[TEAM_A]
    assert [listed(team_a, page_index=i, page_size=2) for i in range(3)] == [
        ["ab", "a4-orphan"],
        ["a3", "a2"],
        ["a1"],
    ]
    assert listed(metadata(issuer)) == LISTED[FULL]
    assert listed(metadata(issuer, [])) == []
    assert stub.GetSession(spb.GetSessionRequest(identity="a1"), metadata=team_a, timeout=30).identity == "a1"
    get_b1 = spb.GetSessionRequest(identity="b1")
    assert _code(lambda: stub.GetSession(get_b1, metadata=team_a, timeout=30)) == grpc.StatusCode.NOT_FOUND
    model = stub.GetSessionMetamodel(spb.GetSessionMetamodelRequest(), metadata=team_a, timeout=30)
    assert "Secret" not in model.metamodel_json and "Norris" in model.metamodel_json
    roots = stub.GetSessionFolders(spb.GetSessionFoldersRequest(), metadata=team_a, timeout=30)
    assert [f.identity for f in roots.folders] == ["teamA"]


@pytest.mark.django_db(transaction=True)
def test_grpc_writes_stay_in_the_tokens_folders(grpc_auth, issuer):
    build_tree()
    stub = sgrpc.SessionStoreStub(grpc_auth)
    team_a = metadata(issuer, ["teamA"])
    U = spb.SessionUpdate
    RACE = wrappers_pb2.StringValue(value="Race")

    def write(identity, *ops):
        request = spb.CreateOrUpdateSessionRequest(identity=identity, updates=list(ops))
        return stub.CreateOrUpdateSession(request, metadata=team_a, timeout=30)

    write("a1", U(set_type=RACE))
    assert Session.objects.get(identity="a1").type == "Race"
    assert _code(lambda: write("b1", U(set_type=RACE))) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: write("new", U(set_type=RACE))) == grpc.StatusCode.PERMISSION_DENIED
    assert not Session.objects.filter(identity="new").exists()
    write("new", U(set_folders=U.FoldersList(identities=["teamA"])))
    assert Session.objects.filter(identity="new").exists()
    stub.DeleteSessions(spb.DeleteSessionsRequest(identities=["b1", "new"]), metadata=team_a, timeout=30)
    assert set(Session.objects.filter(identity__in=["b1", "new"]).values_list("identity", flat=True)) == {"b1"}


@pytest.mark.django_db(transaction=True)
def test_grpc_data_reads_outside_the_scope_are_not_found(grpc_auth, issuer):
    build_tree()
    for identity in ("a1", "b1"):
        _write_events(identity)
    reader = cgrpc.DataReaderStub(grpc_auth)
    team_a = metadata(issuer, ["teamA"])

    def events(identity, md):
        return list(reader.ReadEventsStream(cpb.ReadDataStreamRequest(data_identity=identity), metadata=md, timeout=30))

    assert sum(len(lst.events) for lst in events("a1", team_a)) == 1
    assert _code(lambda: events("b1", team_a)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: events("unbound", team_a)) == grpc.StatusCode.NOT_FOUND
    assert sum(len(lst.events) for lst in events("b1", metadata(issuer))) == 1
    # Writes likewise: only data identities of sessions in the token's folders.
    writer = cgrpc.DataWriterStub(grpc_auth)
    messages = [cpb.WriteDataStreamMessage(data_identity="b1")]
    code = _code(lambda: list(writer.WriteDataStream(iter(messages), metadata=team_a, timeout=30)))
    assert code == grpc.StatusCode.PERMISSION_DENIED


# --- WebSocket ----------------------------------------------------------------------------------------


def _handshake(token, identity):
    """The first two ASGI messages the live stream sends a client of ``identity``."""
    from channels.testing import WebsocketCommunicator

    from rta_site.asgi import application

    async def frames():
        client = WebsocketCommunicator(
            application,
            f"/rta/v2/sessions/{identity}/stream",
            subprotocols=["mat.ocs.rta.stream-lz4"],
            headers=[(b"authorization", f"Bearer {token}".encode())],
        )
        connected, _ = await client.connect(timeout=10)
        first = await client.receive_output(timeout=10)
        await client.disconnect()
        return connected, first

    return async_to_sync(frames)()


@pytest.mark.django_db(transaction=True)
def test_live_stream_outside_the_scope_closes_before_any_data(auth_on):
    build_tree(live=True)
    team_a = auth_on.token("rta.read", **{CLAIM: ["teamA"]})
    # As for a session not stored: accepted, then closed normally without a message.
    assert _handshake(team_a, "b-live") == (True, {"type": "websocket.close", "code": 1000})
    assert _handshake(auth_on.token("rta.read", **{CLAIM: []}), "a-live") == (
        True,
        {"type": "websocket.close", "code": 1000},
    )
    connected, first = _handshake(team_a, "a-live")
    assert connected and first["type"] == "websocket.send" and first.get("bytes")
    connected, first = _handshake(auth_on.token("rta.read"), "b-live")  # no claim: every session
    assert connected and first["type"] == "websocket.send" and first.get("bytes")


def _session_jsons(message):
    """The session JSON documents of one live stream message (a compressed burst)."""
    import json

    import lz4.frame
    from rta.model.net import stream_pb2

    burst = stream_pb2.StreamDataBurst.FromString(lz4.frame.decompress(message["bytes"]))
    return [json.loads(d.session_json) for d in burst.data if d.WhichOneof("type") == "session_json"]


@pytest.mark.django_db(transaction=True)
def test_live_session_json_names_only_related_sessions_in_scope(auth_on):
    """a3's children are a3-child (teamA) and b3-child (teamB): a teamA client is never told of b3-child, in
    the first message, in a JSON update or in the last JSON of the session closing (REST lists the same)."""
    from channels.testing import WebsocketCommunicator

    from rta_site.asgi import application

    build_tree()
    updates.create_or_update_session("a3", [("set_state", 2)])  # open: streamed live
    team_a, anyone = auth_on.token("rta.read", **{CLAIM: ["teamA"]}), auth_on.token("rta.read")

    async def watch(token):
        client = WebsocketCommunicator(
            application,
            "/rta/v2/sessions/a3/stream",
            subprotocols=["mat.ocs.rta.stream-lz4"],
            headers=[(b"authorization", f"Bearer {token}".encode())],
        )
        connected, _ = await client.connect(timeout=10)
        assert connected
        return client

    async def next_json(client):
        while True:
            message = await client.receive_output(timeout=10)
            assert message["type"] == "websocket.send", message
            if documents := _session_jsons(message):
                return documents[-1]

    async def run():
        from asgiref.sync import sync_to_async

        scoped, full = await watch(team_a), await watch(anyone)
        first = [await next_json(scoped), await next_json(full)]
        change = sync_to_async(updates.create_or_update_session)
        await change("a3", [("update_details", {"details": {"Lap": 4}})])
        updated = [await next_json(scoped), await next_json(full)]
        while updated[0].get("details", {}).get("Lap") != 4:
            updated[0] = await next_json(scoped)
        while updated[1].get("details", {}).get("Lap") != 4:
            updated[1] = await next_json(full)
        await change("a3", [("set_state", 4)])  # closed: the last JSON, then a normal close
        closed = [await next_json(scoped), await next_json(full)]
        while closed[0]["state"] != "closed":
            closed[0] = await next_json(scoped)
        while closed[1]["state"] != "closed":
            closed[1] = await next_json(full)
        for client in (scoped, full):
            await client.disconnect()
        return first, updated, closed

    for scoped, full in async_to_sync(run)():
        assert scoped["children"] == ["a3-child"], scoped
        assert full["children"] == ["a3-child", "b3-child"], full
