"""Unary calls run on the server's few unary threads, streams on its larger pool; both keep working."""

import threading

import grpc
import pytest
from django.test import override_settings

from rta_site.grpc_server import build_server

SEEN = []


def register(server):
    """A test service recording the thread each call runs on (raw bytes, no protos)."""

    def unary(request, context):
        SEEN.append(("unary", threading.current_thread().name))
        return request

    def stream(request_iterator, context):
        for request in request_iterator:
            SEEN.append(("stream", threading.current_thread().name))
            yield request

    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Threads",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(unary),
                    "Stream": grpc.stream_stream_rpc_method_handler(stream),
                },
            )
        ]
    )
    return []


@pytest.mark.django_db(transaction=True)
def test_unary_and_streaming_calls_use_their_own_threads():
    SEEN.clear()
    with override_settings(RTA_GRPC_SERVICES=["tests.test_grpc_threads.register"], RTA_GRPC_UNARY_WORKERS=2):
        server, port = build_server(port=0, bind="127.0.0.1", max_workers=3)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary("/test.Threads/Unary")
            stream = channel.stream_stream("/test.Threads/Stream")
            assert [unary(b"x%d" % i, timeout=10) for i in range(6)] == [b"x%d" % i for i in range(6)]
            assert list(stream(iter([b"a", b"b"]), timeout=10)) == [b"a", b"b"]
    finally:
        server.stop(None).wait()
    unary_threads = {name for kind, name in SEEN if kind == "unary"}
    stream_threads = {name for kind, name in SEEN if kind == "stream"}
    assert unary_threads and all(name.startswith("grpc-unary") for name in unary_threads)
    assert len(unary_threads) <= 2
    assert stream_threads and not any(name.startswith("grpc-unary") for name in stream_threads)
