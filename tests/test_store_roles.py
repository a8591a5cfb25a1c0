"""Read and write roles, ``init_store`` and the health check of the object store."""

import io

import grpc
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.models import Chunk
from data_app.store.writer import ChunkWriter
from sessions_app.services.updates import create_or_update_session
from tests.s3_server import bucket_keys
from tests.test_data_admin import periodic
from tests.test_data_service import grpc_channel  # noqa: F401  (a fixture: the data services on a free port)

S = 1_000_000_000
T0 = 1_700_000_000 * S
pytestmark = pytest.mark.django_db(transaction=True)


def _periodic(values):
    return periodic(1, T0, values, S // 100)


def test_a_writer_less_instance_refuses_write_data_stream_at_its_first_message(settings, grpc_channel):
    settings.RTA_ENABLE_DATA_WRITER = False
    messages = [
        pb.WriteDataStreamMessage(data_identity="refused"),
        pb.WriteDataStreamMessage(periodic_data=_periodic([1, 2, 3])),
        pb.WriteDataStreamMessage(flush_marker="m"),
    ]
    responses = pb_grpc.DataWriterStub(grpc_channel).WriteDataStream(iter(messages), timeout=20)
    received = []
    with pytest.raises(grpc.RpcError) as failure:
        received.extend(responses)
    assert received == []  # nothing acknowledged
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "RTA_ENABLE_DATA_WRITER" in failure.value.details()
    assert not Chunk.objects.exists()


def test_a_reader_less_instance_refuses_reads_and_still_writes(settings, grpc_channel, client):
    settings.RTA_ENABLE_DATA_READER = False
    responses = pb_grpc.DataWriterStub(grpc_channel).WriteDataStream(
        iter(
            [
                pb.WriteDataStreamMessage(data_identity="writer-only"),
                pb.WriteDataStreamMessage(periodic_data=_periodic([1, 2, 3])),
                pb.WriteDataStreamMessage(flush_marker="m"),
            ]
        ),
        timeout=20,
    )
    assert [r.flush_completed for r in responses] == ["m"]
    assert Chunk.objects.filter(identity="writer-only").exists()
    request = pb.ReadChannelDataStreamRequest(data_identity="writer-only", channels="1")
    with pytest.raises(grpc.RpcError) as failure:
        list(pb_grpc.DataReaderStub(grpc_channel).ReadPeriodicDataStream(request, timeout=20))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    create_or_update_session("writer-only", [("set_state", 2)])
    response = client.get("/rta/v2/sessions/writer-only/data/periodic/1")
    assert response.status_code == 503
    assert "RTA_ENABLE_DATA_READER" in response.json()["error"]


def test_init_store_prepares_and_checks_the_bucket(s3_store):
    out = io.StringIO()
    call_command("init_store", stdout=out)
    assert "marker store/.rta-store written" in out.getvalue()
    assert "store/.rta-store" in bucket_keys(s3_store["RTA_S3_ENDPOINT_URL"], s3_store["RTA_S3_BUCKET"])
    out = io.StringIO()
    call_command("init_store", "--skip-migrate", stdout=out)  # again: an upgrade check, nothing rewritten
    assert "format 1" in out.getvalue() and "store ready: s3://" in out.getvalue()


def test_init_store_fails_clearly_without_the_bucket(s3_store, settings):
    settings.RTA_S3_BUCKET = "rta-missing-bucket"
    with pytest.raises(CommandError, match="bucket does not exist"):
        call_command("init_store", "--skip-migrate", stdout=io.StringIO())


def test_init_store_on_the_file_store(settings):
    out = io.StringIO()
    call_command("init_store", "--skip-migrate", stdout=out)
    assert "store ready: file store" in out.getvalue()


def test_health_checks_the_bucket(s3_store, settings, client):
    assert client.get("/health").status_code == 200
    settings.RTA_S3_BUCKET = "rta-missing-bucket"
    response = client.get("/health")
    assert response.status_code == 503
    body = response.content.decode()
    assert "data store" in body and "bucket does not exist" in body
    assert s3_store["RTA_S3_ENDPOINT_URL"] not in body  # the endpoint is private


def test_the_session_data_overview_says_where_the_bytes_are(s3_store, admin_client):
    create_or_update_session("where", [("set_state", 2)])
    writer = ChunkWriter("where")
    writer.add("periodic", _periodic(list(range(100))))
    writer.flush()
    from sessions_app.models import Session

    session = Session.objects.get(identity="where")
    from data_app.admin.session_data import data_overview

    assert f"s3://{s3_store['RTA_S3_BUCKET']}/store/" in data_overview(session)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RTA_STORE": "s4"}, "RTA_STORE='s4' is not valid: expected one of file, s3"),
        ({"RTA_STORE": "s3"}, "RTA_S3_BUCKET='' is not valid: expected a bucket name when RTA_STORE=s3"),
        ({"RTA_ENABLE_DATA_WRITER": "perhaps"}, "RTA_ENABLE_DATA_WRITER='perhaps' is not valid"),
    ],
)
def test_store_settings_are_strict(env, needle, tmp_path):
    from tests.test_settings_strict import check

    result = check(env, tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
