"""Several servers on one store: ``manage.py rungrpc`` processes sharing PostgreSQL, Redis and a bucket.

A writer instance (``RTA_ENABLE_DATA_READER=false``) and a reader instance
(``RTA_ENABLE_DATA_WRITER=false``) run as subprocesses against the test
database, this worker's Redis and a moto bucket; this process is a third
instance (REST, compaction). What the writer acknowledged with
``flush_completed`` is served at once by the others, also while compaction
rewrites the objects under a read, and survives SIGKILL of the writer.
"""

import asyncio

import grpc
import pytest
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.live.buffers import get_buffer
from data_app.models import Chunk
from data_app.store import compaction
from rta_kit import wire
from sessions_app.services.updates import create_or_update_session
from tests import test_data_durability as durability
from tests.s3_server import bucket_keys

pytestmark = pytest.mark.django_db(transaction=True)


def _read(channel, identity="dur"):
    stub = pb_grpc.DataReaderStub(channel)
    return durability.served_samples(
        stub.ReadPeriodicDataStream(pb.ReadChannelDataStreamRequest(data_identity=identity, channels="1-2"))
    )


@pytest.fixture
def shared_env(s3_store, redis_url, tmp_path):
    # A data path of its own per instance would do as well: nothing of the store is on local disk.
    return {**s3_store, "RTA_REDIS_URL": redis_url, "RTA_DATA_FLUSH_AGE": "0"}


def test_one_instance_writes_another_reads_at_once_and_compaction_runs_beside_reads(
    postgres, api, shared_env, settings
):
    settings.RTA_REDIS_URL = shared_env["RTA_REDIS_URL"]
    create_or_update_session("dur", [("set_state", 2)])  # open: live
    writer_instance = durability.Server(**shared_env, RTA_ENABLE_DATA_READER="false")
    reader_instance = durability.Server(**shared_env, RTA_ENABLE_DATA_WRITER="false")
    try:
        writer = durability.Writer(writer_instance.channel, "dur")
        acked = {}
        for second in range(6):
            messages, samples, _ = durability.batch(second)
            for m in messages:
                writer.send(m)
            writer.flush(f"m{second}")
            acked.update({(ch, t): v for ch, t, v in samples})
            assert _read(reader_instance.channel) == acked  # readable elsewhere as soon as acknowledged
        # Live: the writer instance published the items to the shared Redis as they came, for the
        # WebSocket followers of every instance (this one included).
        buffer = get_buffer()
        directory = buffer.get_session("dur")
        assert directory is not None
        assert asyncio.run(buffer.aread_range(directory.stream_name, None, None, 10))
        for second in (1, 3):  # late data: merged into new objects, the old ones left as garbage
            messages, samples, _ = durability.batch(second, late=True)
            for m in messages:
                writer.send(m)
            acked.update({(ch, t): v for ch, t, v in samples})
        writer.flush("late")
        writer.close()
        assert _read(reader_instance.channel) == acked

        # The reader instance refuses writes; the writer instance refuses reads.
        with pytest.raises(grpc.RpcError) as failure:
            list(durability.Writer(reader_instance.channel, "dur").responses)
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as failure:
            _read(writer_instance.channel)
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # Compaction (this process) while the reader instance is in the middle of a read: objects the
        # late data superseded are retired, not deleted, so reads that began before keep their bytes.
        stub = pb_grpc.DataReaderStub(reader_instance.channel)
        stream = stub.ReadPeriodicDataStream(pb.ReadChannelDataStreamRequest(data_identity="dur", channels="1-2"))
        first = next(stream)  # the read has queried the index and begun
        summary = compaction.compact(min_garbage_ratio=0.01, grace_seconds=3600)
        assert summary.removed == 0 and summary.examined > len(set(Chunk.objects.values_list("file", flat=True)))
        retired = bucket_keys(shared_env["RTA_S3_ENDPOINT_URL"], shared_env["RTA_S3_BUCKET"], "store/retired/")
        assert retired
        assert durability.served_samples([first, *stream]) == acked
        assert _read(reader_instance.channel) == acked

        # REST in this process (a third instance) serves the same.
        response = api.get("/rta/v2/sessions/dur/data/periodic/1-2")
        chunks = wire.read_chunks(b"".join(response.streaming_content))
        assert durability.served_samples(c.decode("periodic") for c in chunks) == acked

        # Once the grace is over (0 here), only objects rows name are left.
        compaction.compact(min_garbage_ratio=1, grace_seconds=0)
        keys = {
            k[len("store/") :]
            for k in bucket_keys(shared_env["RTA_S3_ENDPOINT_URL"], shared_env["RTA_S3_BUCKET"], "store/")
        }
        assert keys == set(Chunk.objects.values_list("file", flat=True))
        assert _read(reader_instance.channel) == acked
    finally:
        writer_instance.stop()
        reader_instance.stop()


def test_acknowledged_data_survives_sigkill_of_a_writer_on_object_storage(postgres, api, shared_env, monkeypatch):
    """The file store's SIGKILL scenario (test_data_durability), on the bucket."""
    for name, value in shared_env.items():
        monkeypatch.setenv(name, value)
    durability.test_acknowledged_data_survives_sigkill(postgres, api)
    assert Chunk.objects.filter(identity="dur").exclude(file__startswith="chunks/").count() == 0
