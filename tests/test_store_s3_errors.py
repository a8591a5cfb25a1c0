"""Object store failures become clear gRPC/HTTP errors, and nothing acknowledged is lost.

The failing store is a real HTTP server on loopback answering every request
with S3's 500 InternalError (what an overloaded or broken S3-compatible server
sends); botocore retries it, then the error reaches the client as UNAVAILABLE / 503.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.models import Chunk
from data_app.store import objects
from data_app.store.objects.s3 import ObjectStoreUnavailable
from sessions_app.services.updates import create_or_update_session
from tests.test_data_admin import periodic
from tests.test_store_roles import grpc_channel  # noqa: F401

S = 1_000_000_000
T0 = 1_700_000_000 * S
pytestmark = pytest.mark.django_db(transaction=True)

ERROR = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>boom</Message></Error>'


class _Failing(BaseHTTPRequestHandler):
    def _fail(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(ERROR)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(ERROR)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _fail

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _periodic(values, start=T0):
    return periodic(1, start, values, S // 100)


def _write(channel, identity, *items, marker="m"):
    messages = [pb.WriteDataStreamMessage(data_identity=identity)]
    messages += [pb.WriteDataStreamMessage(periodic_data=item) for item in items]
    messages.append(pb.WriteDataStreamMessage(flush_marker=marker))
    return pb_grpc.DataWriterStub(channel).WriteDataStream(iter(messages), timeout=60)


def test_500s_fail_the_write_stream_with_unavailable_and_keep_what_was_acknowledged(
    s3_store,
    settings,
    grpc_channel,  # noqa: F811
    failing_endpoint,
    client,
):
    create_or_update_session("errs", [("set_state", 2)])
    assert [r.flush_completed for r in _write(grpc_channel, "errs", _periodic([1, 2, 3]))] == ["m"]
    stored = list(Chunk.objects.values_list("file", "offset", "packed_length"))

    settings.RTA_S3_ENDPOINT_URL = failing_endpoint  # the store starts answering 500
    received = []
    with pytest.raises(grpc.RpcError) as failure:
        received.extend(_write(grpc_channel, "errs", _periodic([4, 5, 6], T0 + S), marker="lost"))
    assert received == []  # never acknowledged
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "InternalError (HTTP 500)" in failure.value.details()
    assert failing_endpoint not in failure.value.details()
    assert list(Chunk.objects.values_list("file", "offset", "packed_length")) == stored  # no row without its object

    response = client.get("/rta/v2/sessions/errs/data/periodic/1")
    assert response.status_code == 503
    assert "InternalError" in response.json()["error"]
    with pytest.raises(grpc.RpcError) as failure:
        request = pb.ReadChannelDataStreamRequest(data_identity="errs", channels="1")
        list(pb_grpc.DataReaderStub(grpc_channel).ReadPeriodicDataStream(request, timeout=60))
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE

    settings.RTA_S3_ENDPOINT_URL = s3_store["RTA_S3_ENDPOINT_URL"]  # back: everything acknowledged is there
    response = client.get("/rta/v2/sessions/errs/data/periodic/1")
    assert response.status_code == 200 and len(b"".join(response.streaming_content)) > 0


def test_a_missing_bucket_is_a_clear_error_for_writers_and_readers(s3_store, settings, grpc_channel, client):  # noqa: F811
    settings.RTA_S3_BUCKET = "rta-no-such-bucket"
    with pytest.raises(grpc.RpcError) as failure:
        list(_write(grpc_channel, "nobucket", _periodic([1, 2, 3])))
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "bucket does not exist" in failure.value.details()
    assert not Chunk.objects.exists()
    with pytest.raises(ObjectStoreUnavailable, match="bucket does not exist"):
        objects.store().check_bucket()


@pytest.fixture
def silent_endpoint():
    """A loopback server that accepts requests and never answers (until the test ends)."""
    import socket

    done = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)  # read nothing back, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    done.set()
    listener.close()
    for conn in held:
        conn.close()


def test_a_store_that_does_not_answer_fails_the_flush_with_unavailable(
    s3_store,
    settings,
    grpc_channel,  # noqa: F811
    silent_endpoint,
    monkeypatch,
):
    from data_app.store.objects import s3

    monkeypatch.setattr(s3, "READ_TIMEOUT", 0.2)  # the store's clients made from here on give up sooner
    settings.RTA_S3_ENDPOINT_URL = silent_endpoint
    received = []
    with pytest.raises(grpc.RpcError) as failure:
        received.extend(_write(grpc_channel, "silent", _periodic([1, 2, 3])))
    assert received == []
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no answer in time" in failure.value.details()
    assert not Chunk.objects.exists()
