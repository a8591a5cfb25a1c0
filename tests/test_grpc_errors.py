"""One gRPC status mapping for every service: each error class reaches the client as its own status.

Every method of every servicer on the port is replaced by a handler that
raises the error under test; the real server (with its interceptors) answers.
"""

import grpc
import pytest
from django.db import DataError
from rta.toolkit.api import chunk_service_pb2, config_service_pb2, session_service_pb2

from rta_core import errors
from tests.grpc_helpers import running_server

RAISED = {}  # what the patched handlers raise, set per test


def _raise(*_args, **_kwargs):
    raise RAISED["error"]


def _raising_stream(*_args, **_kwargs):
    raise RAISED["error"]
    yield  # a generator, like the streaming handlers it replaces


SERVICES = [
    (session_service_pb2, "SessionStore", "sessions_app.grpc.servicer.SessionStoreServicer"),
    (config_service_pb2, "ConfigStore", "config_app.grpc.servicer.ConfigStoreServicer"),
    (chunk_service_pb2, "DataReader", "data_app.grpc.servicer.DataReaderServicer"),
    (chunk_service_pb2, "DataWriter", None),  # a generic handler over write_data_stream
]
METHODS = [
    (f"/{module.DESCRIPTOR.services_by_name[name].full_name}/{method.name}", method)
    for module, name, _ in SERVICES
    for method in module.DESCRIPTOR.services_by_name[name].methods
]


@pytest.fixture(scope="module")
def channel(django_db_setup, django_db_blocker):
    from django.utils.module_loading import import_string

    with pytest.MonkeyPatch.context() as patch:
        for module, name, servicer_path in SERVICES:
            if servicer_path is None:
                patch.setattr("data_app.grpc.servicer.write_data_stream", _raising_stream)
                continue
            servicer = import_string(servicer_path)
            for method in module.DESCRIPTOR.services_by_name[name].methods:
                patch.setattr(servicer, method.name, _raising_stream if method.server_streaming else _raise)
        with running_server(django_db_blocker) as (_, port):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
                grpc.channel_ready_future(opened).result(timeout=10)
                yield opened


def _call(channel, path, method):
    kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
    request = iter([b""]) if method.client_streaming else b""
    call = getattr(channel, kind)(path)
    try:
        result = call(request, timeout=10)
        if method.server_streaming:
            list(result)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


CASES = [
    (errors.InvalidArgument("bad value"), grpc.StatusCode.INVALID_ARGUMENT, "bad value"),
    (errors.NotFound("no such thing"), grpc.StatusCode.NOT_FOUND, "no such thing"),
    (errors.NotAcceptable("no such type"), grpc.StatusCode.INVALID_ARGUMENT, "no such type"),
    (errors.TooLarge("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED, "too big"),
    (errors.Unauthenticated("who are you"), grpc.StatusCode.UNAUTHENTICATED, "who are you"),
    (errors.PermissionDenied("not yours"), grpc.StatusCode.PERMISSION_DENIED, "not yours"),
    (errors.Unavailable("try later"), grpc.StatusCode.UNAVAILABLE, "try later"),
    (errors.UpstreamFailed("source down"), grpc.StatusCode.UNAVAILABLE, "source down"),
    (errors.UpstreamTimeout("source slow"), grpc.StatusCode.DEADLINE_EXCEEDED, "source slow"),
    (
        DataError("value too long for type character varying(1024)\nSQL..."),
        grpc.StatusCode.INVALID_ARGUMENT,
        "value not storable: value too long for type character varying(1024)",
    ),
    (RuntimeError("a bug"), grpc.StatusCode.INTERNAL, "internal server error"),
]


@pytest.mark.parametrize(("error", "code", "details"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_every_method_answers_the_error_class_status(channel, error, code, details):
    RAISED["error"] = error
    answered = {path: _call(channel, path, method) for path, method in METHODS}
    assert answered == {path: (code, details) for path, _ in METHODS}


def test_every_error_class_carries_both_statuses():
    for kind in [errors.ServiceError, *errors.ServiceError.__subclasses__()]:
        assert 400 <= kind.http_status < 600
        assert isinstance(kind.grpc_status, grpc.StatusCode)
        assert kind.grpc_status not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK)


def test_excerpt_bounds_quoted_input():
    assert errors.excerpt("abc") == "'abc'"
    long = errors.excerpt("x" * 100_000)
    assert len(long) < 120 and long.endswith("(100002 chars)")
