"""ConfigStore over a real gRPC channel to an in-process server (spec §7)."""

import hashlib
import json
import os
import time
from pathlib import Path

import grpc
import pytest
from django.conf import settings
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rta.toolkit.api import config_service_pb2 as pb  # noqa: E402  (importable once settings load)
from rta.toolkit.api import config_service_pb2_grpc as pb_grpc  # noqa: E402

from tests import grpc_helpers
from tests.grpc_helpers import grpc_channel  # noqa: F401  (fixture)
from tests.test_configs_store import HOSTILE_IDENTIFIERS, assert_all_files_under_store
from tests.test_configs_validation import demo_config

REGISTER = "config_app.grpc.register"
SERVICE = "rta.toolkit.api.config_service.ConfigStore"
JSON = "application/vnd.mat.config+json"
FFC = "application/vnd.mat.config+ffc"
DEMO = json.dumps(demo_config()).encode()
MiB = 1024 * 1024
db = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def grpc_server(django_db_setup, django_db_blocker):
    """The shared in-process server (tests/grpc_helpers.py), with the ConfigStore registered."""
    services = list(settings.RTA_GRPC_SERVICES)
    if REGISTER not in services:
        services.append(REGISTER)
    with grpc_helpers.running_server(django_db_blocker, services) as running:
        yield running


@pytest.fixture
def configs(grpc_channel):  # noqa: F811
    return pb_grpc.ConfigStoreStub(grpc_channel)


def status_of(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def put(configs, identifier, data, content_type=FFC):
    return configs.PutConfig(
        pb.PutConfigRequest(identifier=identifier, content_type=content_type, data=data), timeout=10
    )


def get(configs, identifier):
    response = configs.GetConfig(pb.GetConfigRequest(identifier=identifier), timeout=10)
    return response.content_type, response.data


def has(configs, identifier):
    return configs.HasConfig(pb.HasConfigRequest(identifier=identifier), timeout=10).value


def stream_messages(identifier, content_type, data, piece_size=MiB):
    yield pb.ConfigStreamMessage(
        info=pb.ConfigStreamMessage.ConfigInfo(identifier=identifier, content_type=content_type)
    )
    view = memoryview(data)
    for start in range(0, len(data), piece_size):
        yield pb.ConfigStreamMessage(piece=bytes(view[start : start + piece_size]))


def put_stream(configs, identifier, data, content_type=FFC, piece_size=MiB):
    return configs.PutConfigStream(stream_messages(identifier, content_type, data, piece_size), timeout=60)


def get_stream(configs, identifier):
    """``(info, sha256 hex, size, largest piece)`` of a GetConfigStream, hashed as it arrives."""
    messages = configs.GetConfigStream(pb.GetConfigRequest(identifier=identifier), timeout=60)
    first = next(messages)
    assert first.WhichOneof("type") == "info"
    digest, size, largest = hashlib.sha256(), 0, 0
    for message in messages:
        assert message.WhichOneof("type") == "piece"
        digest.update(message.piece)
        size += len(message.piece)
        largest = max(largest, len(message.piece))
    return first.info, digest.hexdigest(), size, largest


@db
def test_service_is_registered_with_health_and_reflection(grpc_server, grpc_channel):  # noqa: F811
    server, _ = grpc_server
    assert SERVICE in server.service_names
    health = health_pb2_grpc.HealthStub(grpc_channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE)).status == health_pb2.HealthCheckResponse.SERVING


@db
def test_unary_round_trip(configs):
    assert not has(configs, "demo-1")
    put(configs, "demo-1", DEMO, JSON)
    assert has(configs, "demo-1")
    assert get(configs, "demo-1") == (JSON, DEMO)


@db
def test_stream_round_trip_and_mixed_calls(configs):
    data = os.urandom(3 * MiB + 123)
    put_stream(configs, "ffc-stream", data, piece_size=MiB // 3)
    info, sha, size, _ = get_stream(configs, "ffc-stream")
    assert (info.identifier, info.content_type, sha, size) == (
        "ffc-stream",
        FFC,
        hashlib.sha256(data).hexdigest(),
        len(data),
    )
    assert get(configs, "ffc-stream") == (FFC, data)  # under the unary limit
    put(configs, "small", b"\x01\x02")
    info, sha, size, _ = get_stream(configs, "small")
    assert (sha, size) == (hashlib.sha256(b"\x01\x02").hexdigest(), 2)


@db
def test_streamed_json_is_validated_when_complete(configs):
    document = demo_config()
    # a few MiB of JSON, sent in small pieces
    document["demo"]["parameters"] = [dict(p) for _ in range(2000) for p in document["demo"]["parameters"]]
    data = json.dumps(document).encode()
    put_stream(configs, "big-json", data, JSON, piece_size=64 * 1024)
    assert get_stream(configs, "big-json")[1] == hashlib.sha256(data).hexdigest()
    document["demo"]["parameters"][-1]["channels"] = [77]
    code, details = status_of(lambda: put_stream(configs, "bad-json", json.dumps(document).encode(), JSON, 64 * 1024))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "demo.parameters[5999].channels[0]: channel 77 is not defined"
    assert not has(configs, "bad-json")


@db
def test_fifty_mib_streamed_round_trip(configs):
    data = os.urandom(50 * MiB)
    expected = hashlib.sha256(data).hexdigest()
    put_stream(configs, "huge", data)
    del data
    info, sha, size, largest = get_stream(configs, "huge")
    assert (info.content_type, sha, size) == (FFC, expected, 50 * MiB)
    assert largest <= MiB
    code, details = status_of(lambda: get(configs, "huge"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "use GetConfigStream" in details


@db
def test_unary_get_serves_up_to_the_message_limit(configs):
    from config_app.grpc.servicer import ENVELOPE_BYTES

    largest = settings.RTA_GRPC_MAX_MESSAGE_BYTES - ENVELOPE_BYTES
    data = os.urandom(largest + 1)
    put_stream(configs, "at-limit", data[:largest])
    put_stream(configs, "over-limit", data)
    assert get(configs, "at-limit") == (FFC, data[:largest])
    code, details = status_of(lambda: get(configs, "over-limit"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == (
        f"config 'over-limit' is {largest + 1} bytes, over the {largest}-byte message limit: use GetConfigStream"
    )


@db
def test_unary_limit_is_grpc_default(configs):
    code, _ = status_of(lambda: put(configs, "too-big", b"x" * (settings.RTA_GRPC_MAX_MESSAGE_BYTES + 1)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not has(configs, "too-big")


@db
def test_put_is_a_no_op_when_published(configs):
    put(configs, "immutable", b"first")
    put(configs, "immutable", b"second")  # succeeds...
    put_stream(configs, "immutable", os.urandom(8 * MiB))  # a large re-publication is answered without reading it
    put(configs, "immutable", DEMO, JSON)
    assert get(configs, "immutable") == (FFC, b"first")  # ...but never overwrites


@db
def test_delete(configs):
    put(configs, "doomed", b"bytes")
    configs.DeleteConfig(pb.DeleteConfigRequest(identifier="doomed"), timeout=10)
    assert not has(configs, "doomed")
    configs.DeleteConfig(pb.DeleteConfigRequest(identifier="doomed"), timeout=10)  # missing: succeeds
    code, details = status_of(lambda: get(configs, "doomed"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "config 'doomed' not found")
    code, _ = status_of(lambda: next(configs.GetConfigStream(pb.GetConfigRequest(identifier="doomed"), timeout=10)))
    assert code == grpc.StatusCode.NOT_FOUND
    assert [p for p in Path(settings.RTA_DATA_PATH).rglob("*") if p.is_file()] == []


def _bad(document_change):
    document = demo_config()
    document_change(document)
    return json.dumps(document).encode()


@db
@pytest.mark.parametrize(
    "request_, expected",
    [
        (pb.PutConfigRequest(identifier="j", content_type=JSON, data=b"{not json"), "invalid JSON at line 1 column 2"),
        (
            pb.PutConfigRequest(
                identifier="j", content_type=JSON, data=_bad(lambda d: d["demo"]["parameters"][0].pop("conv"))
            ),
            "demo.parameters[0]: missing required field 'conv'",
        ),
        (
            pb.PutConfigRequest(
                identifier="j", content_type=JSON, data=_bad(lambda d: d["demo"]["channels"][0].update(type="f16"))
            ),
            "demo.channels[0].type: must be one of u8, s8, u16, s16, u32, s32, f32, 3f32, f64 (got 'f16')",
        ),
        (
            pb.PutConfigRequest(
                identifier="j",
                content_type=JSON,
                data=_bad(lambda d: d["demo"]["parameters"][2].update(channels=[4, 7])),
            ),
            "demo.parameters[2].channels[1]: channel 7 is not defined",
        ),
        (
            pb.PutConfigRequest(identifier="j", content_type="text/plain", data=b"x"),
            "unsupported content type 'text/plain'",
        ),
        (pb.PutConfigRequest(identifier="j", content_type="", data=b"x"), "unsupported content type ''"),
        (pb.PutConfigRequest(identifier="", content_type=FFC, data=b"x"), "identifier must not be empty"),
        (
            pb.PutConfigRequest(identifier="x" * 10_000, content_type=FFC, data=b"x"),
            "identifier is 10000 characters long; the limit is 4096",
        ),
        (pb.PutConfigRequest(identifier="j", content_type=FFC, data=b""), "config data is empty"),
    ],
)
def test_bad_puts_are_invalid_argument(configs, request_, expected):
    code, details = status_of(lambda: configs.PutConfig(request_, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(expected), details
    assert not has(configs, "j")


@db
def test_bad_streams_are_invalid_argument(configs):
    info = pb.ConfigStreamMessage(info=pb.ConfigStreamMessage.ConfigInfo(identifier="s", content_type=FFC))
    piece = pb.ConfigStreamMessage(piece=b"bytes")
    cases = [
        ([piece, info, piece], "the first message of PutConfigStream must be info"),
        ([], "PutConfigStream got no messages"),
        ([info, piece, info, piece], "message 2: info may only be sent first"),
        ([info], "config data is empty"),
        (
            [
                pb.ConfigStreamMessage(
                    info=pb.ConfigStreamMessage.ConfigInfo(identifier="s", content_type="application/zip")
                ),
                piece,
            ],
            "unsupported content type",
        ),
        (
            [pb.ConfigStreamMessage(info=pb.ConfigStreamMessage.ConfigInfo(identifier="", content_type=FFC)), piece],
            "identifier must not be empty",
        ),
        (
            [
                pb.ConfigStreamMessage(info=pb.ConfigStreamMessage.ConfigInfo(identifier="s", content_type=JSON)),
                pb.ConfigStreamMessage(piece=b'{"a": ['),
                pb.ConfigStreamMessage(piece=b"1]}"),
            ],
            "a: must be an object",
        ),
    ]
    for messages, expected in cases:
        code, details = status_of(lambda: configs.PutConfigStream(iter(messages), timeout=10))
        assert (code, details.startswith(expected)) == (grpc.StatusCode.INVALID_ARGUMENT, True), (expected, details)
    assert not has(configs, "s")
    assert assert_all_files_under_store() == []


@db
def test_empty_identifier_is_invalid_everywhere(configs):
    for call in (
        lambda: has(configs, ""),
        lambda: get(configs, ""),
        lambda: next(configs.GetConfigStream(pb.GetConfigRequest(identifier=""), timeout=10)),
        lambda: configs.DeleteConfig(pb.DeleteConfigRequest(identifier=""), timeout=10),
    ):
        code, details = status_of(call)
        assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "identifier must not be empty")


@db
def test_hostile_identifiers_round_trip_inside_the_store(configs):
    for n, identifier in enumerate(HOSTILE_IDENTIFIERS):
        if n % 2:
            put(configs, identifier, f"config {n}".encode())
        else:
            put_stream(configs, identifier, f"config {n}".encode())
    for n, identifier in enumerate(HOSTILE_IDENTIFIERS):
        assert has(configs, identifier)
        assert get(configs, identifier) == (FFC, f"config {n}".encode())
        assert get_stream(configs, identifier)[0].identifier == identifier
    assert len(assert_all_files_under_store()) == len(HOSTILE_IDENTIFIERS)
    for identifier in HOSTILE_IDENTIFIERS:
        configs.DeleteConfig(pb.DeleteConfigRequest(identifier=identifier), timeout=10)
        assert not has(configs, identifier)


@db
def test_cancelled_stream_publishes_nothing(configs):
    def messages():
        yield pb.ConfigStreamMessage(info=pb.ConfigStreamMessage.ConfigInfo(identifier="cut", content_type=FFC))
        yield pb.ConfigStreamMessage(piece=b"x" * MiB)
        raise RuntimeError("client gave up")

    with pytest.raises(grpc.RpcError):
        configs.PutConfigStream(messages(), timeout=10)
    deadline = time.monotonic() + 60
    while [p for p in Path(settings.RTA_DATA_PATH).rglob("*") if p.is_file()] and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the cancellation on its own thread
    assert assert_all_files_under_store() == []
    assert not has(configs, "cut")


@db
def test_a_config_over_the_size_limit_is_refused_and_nothing_kept(configs, settings):
    settings.RTA_CONFIG_MAX_BYTES = 2 * MiB
    code, details = status_of(lambda: put_stream(configs, "too-big", b"x" * (3 * MiB), piece_size=MiB // 2))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "RTA_CONFIG_MAX_BYTES" in details
    assert not has(configs, "too-big") and assert_all_files_under_store() == []
    put_stream(configs, "fits", b"x" * (2 * MiB), piece_size=MiB // 2)  # exactly the limit
    assert has(configs, "fits")
