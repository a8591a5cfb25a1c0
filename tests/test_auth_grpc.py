"""Bearer tokens on gRPC (rta_site.auth.grpc_interceptor): every method of every service on the port,
anonymous, with a read token, with a write token and with bad tokens; health and reflection stay open.

Methods are called generically (raw bytes, an empty request), so a new service or method is covered
as soon as it is registered.
"""

import grpc
import pytest
from django.conf import settings
from django.test import override_settings
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from rta_core.access import Access, current_access
from rta_site.auth.grpc_interceptor import READ, WRITE, classified, required_scope
from tests.auth_issuer import AUDIENCE, BAD_TOKEN_NAMES, MALFORMED_HEADERS, Issuer
from tests.grpc_helpers import running_server

pytestmark = pytest.mark.django_db(transaction=True)

AUTH_ERRORS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
PROBE = "rta.test.AccessProbe"
OPEN_SERVICES = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def register_probe(server):
    """A test service answering the caller's access as seen by a servicer (``current_access()``)."""

    def get_access(request, context):
        access = current_access()
        return f"{access.can_read} {access.can_write} {access.folders} {access.subject}".encode()

    def get_access_stream(request, context):
        yield get_access(request, context)

    handlers = {
        "GetAccess": grpc.unary_unary_rpc_method_handler(get_access),
        "GetAccessStream": grpc.unary_stream_rpc_method_handler(get_access_stream),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(PROBE, handlers)])
    return [PROBE]


@pytest.fixture(scope="module")
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, issuer):
    services = [*settings.RTA_GRPC_SERVICES, "tests.test_auth_grpc.register_probe"]
    with override_settings(
        RTA_AUTH_ENABLED=True,
        RTA_AUTH_AUTHORITY=issuer.url,
        RTA_AUTH_AUDIENCE=AUDIENCE,
        RTA_AUTH_FOLDERS_CLAIM="rta_folders",
    ):
        with running_server(django_db_blocker, services=services) as (server, port):
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=10)
            try:
                yield server, channel
            finally:
                channel.close()


def methods(server):
    """(full method name, client streaming, server streaming) of every method of every registered service."""
    out = []
    for name in server.service_names:
        if name == PROBE:
            continue
        service = descriptor_pool.Default().FindServiceByName(name)
        for method in service.methods:
            out.append((f"/{name}/{method.name}", method.client_streaming, method.server_streaming))
    return out


def invoke(channel, method, client_streaming, server_streaming, metadata=()):
    """Call ``method`` with one empty request (or an empty request stream); the status code it ends with."""
    kind = ("stream" if client_streaming else "unary") + "_" + ("stream" if server_streaming else "unary")
    call = getattr(channel, kind)(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    request = iter(()) if client_streaming else b""
    try:
        result = call(request, metadata=metadata, timeout=30)
        if server_streaming:
            list(result)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


def test_every_method_is_classified_read_or_write(server):
    found = methods(server[0])
    names = {m for m, _, _ in found}
    assert "/rta.toolkit.api.session_service.SessionStore/CreateOrUpdateSession" in names
    assert any(n.startswith("/rta.toolkit.api.schema_mapping_service.SchemaMappingStore/") for n in names)
    unclassified = [m for m in names if not classified(m)]
    assert not unclassified, f"add these to rta_site.auth.grpc_interceptor's rules: {unclassified}"


def test_the_method_table():
    sessions, configs = "/rta.toolkit.api.session_service.SessionStore", "/rta.toolkit.api.config_service.ConfigStore"
    mappings, chunks = "/rta.toolkit.api.schema_mapping_service.SchemaMappingStore", "/rta.toolkit.api.chunk_service"
    expected = {
        f"{sessions}/GetSession": READ,
        f"{sessions}/ListSessions": READ,
        f"{sessions}/GetSessionFolders": READ,
        f"{sessions}/GetSessionMetamodel": READ,
        f"{sessions}/QuerySessionMetamodel": READ,
        f"{sessions}/CreateOrUpdateSession": WRITE,
        f"{sessions}/PutSessionFolder": WRITE,
        f"{sessions}/DeleteSessionFolders": WRITE,
        f"{sessions}/DeleteSessions": WRITE,
        f"{configs}/HasConfig": READ,
        f"{configs}/GetConfig": READ,
        f"{configs}/GetConfigStream": READ,
        f"{configs}/PutConfig": WRITE,
        f"{configs}/PutConfigStream": WRITE,
        f"{configs}/DeleteConfig": WRITE,
        f"{mappings}/HasSchemaMapping": READ,
        f"{mappings}/GetSchemaMapping": READ,
        f"{mappings}/QuerySchemaMapping": READ,
        f"{mappings}/PutSchemaMapping": WRITE,
        f"{mappings}/DeleteSchemaMapping": WRITE,
        f"{chunks}.DataReader/ReadPeriodicDataStream": READ,
        f"{chunks}.DataReader/ReadEventsStream": READ,
        f"{chunks}.DataWriter/WriteDataStream": WRITE,
        "/grpc.health.v1.Health/Check": None,
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": None,
    }
    assert {m: required_scope(m) for m in expected} == expected


def test_anonymous_calls_are_unauthenticated_on_every_method(server):
    srv, channel = server
    # Decided here, not by the rules under test: only health and reflection may answer anonymous calls.
    refused = {m: invoke(channel, m, cs, ss) for m, cs, ss in methods(srv) if m.split("/")[1] not in OPEN_SERVICES}
    assert set(refused.values()) == {grpc.StatusCode.UNAUTHENTICATED}, refused


def test_health_and_reflection_stay_open(server):
    _, channel = server
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=30))
    assert PROBE in [s.name for s in replies[0].list_services_response.service]


def test_a_read_token_reads_and_cannot_write(server, issuer):
    srv, channel = server
    metadata = bearer(issuer.token("rta.read"))
    for method, cs, ss in methods(srv):
        need = required_scope(method)
        if need is None:
            continue
        code = invoke(channel, method, cs, ss, metadata)
        if need == READ:
            assert code not in AUTH_ERRORS + (grpc.StatusCode.UNKNOWN,), f"{method}: {code}"
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, f"{method}: {code}"


def test_a_write_token_writes_and_cannot_read(server, issuer):
    srv, channel = server
    metadata = bearer(issuer.token("rta.write"))
    for method, cs, ss in methods(srv):
        need = required_scope(method)
        if need is None:
            continue
        code = invoke(channel, method, cs, ss, metadata)
        if need == WRITE:
            assert code not in AUTH_ERRORS + (grpc.StatusCode.UNKNOWN,), f"{method}: {code}"
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, f"{method}: {code}"


def test_permission_denied_names_the_missing_scope(server, issuer):
    _, channel = server
    stub = channel.unary_unary(
        "/rta.toolkit.api.session_service.SessionStore/DeleteSessions",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as info:
        stub(b"", metadata=bearer(issuer.token("rta.read")), timeout=30)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "rta.write" in info.value.details()


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
def test_bad_tokens_are_unauthenticated(server, issuer, name):
    _, channel = server
    token = issuer.bad_tokens()[name]
    for method in ("/rta.toolkit.api.session_service.SessionStore/ListSessions", f"/{PROBE}/GetAccess"):
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)(
                b"", metadata=bearer(token), timeout=30
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, info.value.details())
        assert token not in (info.value.details() or "")


@pytest.mark.parametrize("header", MALFORMED_HEADERS)
def test_malformed_authorization_metadata_is_unauthenticated(server, header):
    _, channel = server
    code = invoke(
        channel, "/rta.toolkit.api.session_service.SessionStore/ListSessions", False, False, header_md(header)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def header_md(value):
    return (("authorization", value),)


def test_servicers_see_the_callers_access(server, issuer):
    _, channel = server
    token = issuer.token("rta.read", rta_folders=["Team A", "Team B"])
    for method in ("GetAccess", "GetAccessStream"):
        call = getattr(channel, "unary_unary" if method == "GetAccess" else "unary_stream")(
            f"/{PROBE}/{method}", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        answer = call(b"", metadata=bearer(token), timeout=30)
        answer = answer if method == "GetAccess" else b"".join(answer)
        assert answer.decode() == "True False ('Team A', 'Team B') tester"
    # Outside any call (commands, tests calling services): full access.
    assert current_access() == Access.ANONYMOUS_FULL


def test_a_verified_token_is_not_checked_again(server, issuer):
    _, channel = server
    token = issuer.token("rta.read")
    call = channel.unary_unary(f"/{PROBE}/GetAccess", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    call(b"", metadata=bearer(token), timeout=30)
    fetched = len(issuer.requests)
    issuer.published.remove("rsa-1")  # even were the key withdrawn, the verified token stays good until it expires
    try:
        for _ in range(3):
            call(b"", metadata=bearer(token), timeout=30)
    finally:
        issuer.publish("rsa-1")
    assert len(issuer.requests) == fetched
