"""Identities (issue 16 #1, #2): one rule, applied wherever an identity enters, over gRPC and REST.

An identity is 1..1024 characters without NUL. Writes refuse a bad one
(INVALID_ARGUMENT / 400) before anything is stored; look-ups answer what
cannot exist as absent (NOT_FOUND / 404, or an empty result); nothing becomes
INTERNAL or 500, and no segment file is left behind.
"""

import struct
import threading

import grpc
import pytest
from rta.model import data_pb2
from rta.toolkit.api import chunk_service_pb2 as chunks_pb
from rta.toolkit.api import chunk_service_pb2_grpc as chunks_grpc
from rta.toolkit.api import config_service_pb2 as configs_pb
from rta.toolkit.api import config_service_pb2_grpc as configs_grpc
from rta.toolkit.api import session_service_pb2 as pb
from rta.toolkit.api import session_service_pb2_grpc as pb_grpc

from data_app.models import Chunk
from rta_core.errors import InvalidArgument
from rta_core.identities import MAX_IDENTITY_LENGTH, is_identity, validate_identity
from sessions_app.models import Folder, Session
from tests.grpc_helpers import grpc_channel, grpc_server  # noqa: F401  (fixtures)

S = 1_000_000_000
T0 = 1_700_000_000 * S
LONGEST = "x" * MAX_IDENTITY_LENGTH
TOO_LONG = "x" * (MAX_IDENTITY_LENGTH + 1)
WITH_NUL = "a\x00b"
BAD = {"too_long": TOO_LONG, "nul": WITH_NUL}
db = pytest.mark.django_db(transaction=True)


def status_of(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def segment_files(settings):
    root = settings.RTA_DATA_PATH / "chunks"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "s/1", "é" * 10, LONGEST])
def test_valid_identities(value):
    assert validate_identity(value) == value and is_identity(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "session identity must not be empty"),
        (TOO_LONG, "session identity is 1025 characters long; the limit is 1024"),
        ("x" * 100_000, "session identity is 100000 characters long; the limit is 1024"),
        (WITH_NUL, "session identity 'a\\x00b' must not contain NUL characters"),
        ("lone \udc80", "is not valid Unicode text"),
        (7, "session identity must be a string"),
        (None, "session identity must be a string"),
    ],
)
def test_invalid_identities_are_refused_with_a_short_message(value, message):
    with pytest.raises(InvalidArgument) as info:
        validate_identity(value, "session identity")
    assert message in info.value.message and len(info.value.message) < 200
    assert not is_identity(value)


def test_a_long_identity_with_nul_is_quoted_briefly():
    with pytest.raises(InvalidArgument) as info:
        validate_identity("\x00" + "x" * 1000)
    assert len(info.value.message) < 200


# --- DataWriter / DataReader ---------------------------------------------------------------------


def _write_messages(identity, sent_identity):
    """The identity, then (once the test lets it) data and a flush marker."""
    yield chunks_pb.WriteDataStreamMessage(data_identity=identity)
    sent_identity.wait(30)  # the server must answer before it sees more
    yield chunks_pb.WriteDataStreamMessage(
        periodic_data=data_pb2.PeriodicData(
            channel_id=1, start_timestamp=T0, interval=S, samples=2, buffer=struct.pack("<2h", 1, 2)
        )
    )
    yield chunks_pb.WriteDataStreamMessage(flush_marker="m")


@db
@pytest.mark.parametrize("case", list(BAD))
def test_write_data_stream_refuses_a_bad_identity_at_the_identity_message(grpc_channel, settings, case):  # noqa: F811
    answered = threading.Event()
    writer = chunks_grpc.DataWriterStub(grpc_channel)
    try:
        # A deadline shorter than the client's wait: only a refusal at the first message answers in time.
        code, details = status_of(lambda: list(writer.WriteDataStream(_write_messages(BAD[case], answered), timeout=5)))
    finally:
        answered.set()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith("data identity") and len(details) < 200
    assert not Chunk.objects.exists()
    assert segment_files(settings) == []


@db
def test_the_longest_identity_is_written_and_read(grpc_channel):  # noqa: F811
    answered = threading.Event()
    answered.set()
    writer = chunks_grpc.DataWriterStub(grpc_channel)
    markers = [r.flush_completed for r in writer.WriteDataStream(_write_messages(LONGEST, answered), timeout=10)]
    assert markers == ["m"]
    reader = chunks_grpc.DataReaderStub(grpc_channel)
    lists = list(
        reader.ReadPeriodicDataStream(
            chunks_pb.ReadChannelDataStreamRequest(data_identity=LONGEST, channels="1"), timeout=10
        )
    )
    assert [(item.start_timestamp, item.samples) for lst in lists for item in lst.periodic_data] == [(T0, 2)]


READS = ["ReadTimestampedDataStream", "ReadPeriodicDataStream", "ReadRowDataStream", "ReadEventsStream"]


@db
@pytest.mark.parametrize("case", list(BAD))
def test_data_reader_refuses_a_bad_identity(grpc_channel, case):  # noqa: F811
    reader = chunks_grpc.DataReaderStub(grpc_channel)
    for method in READS:
        if method == "ReadEventsStream":
            request = chunks_pb.ReadDataStreamRequest(data_identity=BAD[case])
        else:
            request = chunks_pb.ReadChannelDataStreamRequest(data_identity=BAD[case], channels="0-")
        code, details = status_of(lambda: list(getattr(reader, method)(request, timeout=10)))
        assert (method, code) == (method, grpc.StatusCode.INVALID_ARGUMENT), details
        assert details.startswith("data_identity") and len(details) < 200


# --- SessionStore -------------------------------------------------------------------------------


@db
@pytest.mark.parametrize("case", list(BAD))
def test_session_writes_refuse_a_bad_identity(grpc_channel, case):  # noqa: F811
    store = pb_grpc.SessionStoreStub(grpc_channel)
    bad = BAD[case]
    U = pb.SessionUpdate
    calls = {
        "create": lambda: store.CreateOrUpdateSession(pb.CreateOrUpdateSessionRequest(identity=bad), timeout=10),
        "set_folders": lambda: store.CreateOrUpdateSession(
            pb.CreateOrUpdateSessionRequest(identity="s1", updates=[U(set_folders=U.FoldersList(identities=[bad]))]),
            timeout=10,
        ),
        "data_binding": lambda: store.CreateOrUpdateSession(
            pb.CreateOrUpdateSessionRequest(
                identity="s1",
                updates=[
                    U(
                        set_data_bindings=U.DataBindingsList(
                            data_bindings=[pb.DataBinding(key=pb.DataBindingKey(identity=bad))]
                        )
                    )
                ],
            ),
            timeout=10,
        ),
        "put_folder": lambda: store.PutSessionFolder(pb.PutSessionFolderRequest(identity=bad), timeout=10),
        "put_folder_parent": lambda: store.PutSessionFolder(
            pb.PutSessionFolderRequest(parent_identity=bad, identity="f1"), timeout=10
        ),
    }
    answered = {name: status_of(call) for name, call in calls.items()}
    assert {name: code for name, (code, _) in answered.items()} == dict.fromkeys(
        calls, grpc.StatusCode.INVALID_ARGUMENT
    )
    assert all(len(details) < 300 for _, details in answered.values()), answered
    assert not Session.objects.exists()
    assert set(Folder.objects.values_list("identity", flat=True)) <= {""}


@db
@pytest.mark.parametrize("bad", [WITH_NUL, "x" * 20_000])
def test_session_look_ups_of_a_bad_identity_find_nothing(grpc_channel, bad):  # noqa: F811
    store = pb_grpc.SessionStoreStub(grpc_channel)
    code, details = status_of(lambda: store.GetSession(pb.GetSessionRequest(identity=bad), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("session ") and len(details) < 200
    store.DeleteSessions(pb.DeleteSessionsRequest(identities=[bad]), timeout=10)
    store.DeleteSessionFolders(pb.DeleteSessionFoldersRequest(folder_identities=[bad]), timeout=10)
    assert not store.GetSessionFolders(pb.GetSessionFoldersRequest(parent_identity=bad), timeout=10).folders
    assert not store.ListSessions(pb.ListSessionsRequest(folder_subtree=bad), timeout=10).sessions


# --- ConfigStore --------------------------------------------------------------------------------


@db
def test_config_identifiers_follow_the_same_rule(grpc_channel):  # noqa: F811
    configs = configs_grpc.ConfigStoreStub(grpc_channel)
    ffc = "application/vnd.mat.config+ffc"
    for call in (
        lambda: configs.PutConfig(
            configs_pb.PutConfigRequest(identifier=WITH_NUL, content_type=ffc, data=b"x"), timeout=10
        ),
        lambda: configs.HasConfig(configs_pb.HasConfigRequest(identifier=WITH_NUL), timeout=10),
    ):
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "must not contain NUL" in details


# --- REST --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("identity", ["%00", "a%00b", "x" * 1100])
@pytest.mark.parametrize("path", ["data/periodic/0-", "data/timestamped/1", "data/row/0-", "data/events"])
@pytest.mark.parametrize("method", ["get", "head"])
def test_rest_data_of_a_bad_identity_is_not_found(api, identity, path, method):
    response = getattr(api, method)(f"/rta/v2/sessions/{identity}/{path}")
    assert response.status_code == 404
    if method == "get":
        message = response.json()["error"]
        assert message.startswith("session ") and message.endswith("not found") and len(message) < 200


@pytest.mark.django_db
def test_rest_session_look_ups_of_a_bad_identity(api):
    response = api.get("/rta/v2/sessions/" + "x" * 20_000)
    assert response.status_code == 404 and len(response.json()["error"]) < 200
    assert api.get("/rta/v2/sessions/a%00b").status_code == 404
    response = api.get("/rta/v2/session-folders/a%00b")
    assert (response.status_code, response.json()) == (200, [])


# --- the live stream (WebSocket) ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("identity", ["a%00b", "x" * 1100])
def test_live_stream_of_a_bad_identity_closes_normally(identity):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from rta_site.asgi import application

    async def frames():
        client = WebsocketCommunicator(
            application, f"/rta/v2/sessions/{identity}/stream", subprotocols=["mat.ocs.rta.stream-lz4"]
        )
        connected, _ = await client.connect(timeout=10)
        closed = await client.receive_output(timeout=10)
        await client.disconnect()
        return connected, closed

    assert async_to_sync(frames)() == (True, {"type": "websocket.close", "code": 1000})  # as for a session not stored
