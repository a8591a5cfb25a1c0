"""The chunk store on object storage (``RTA_STORE=s3``, moto's S3 server): layout, errors, compaction."""

import struct

import pytest

from data_app.models import Chunk
from data_app.store import compaction, objects, reader
from data_app.store.objects import chunks
from data_app.store.objects.s3 import ObjectMissing, ObjectStoreUnavailable
from data_app.store.writer import SECOND as S
from data_app.store.writer import ChunkWriter
from tests.s3_server import bucket_keys
from tests.test_data_admin import periodic

T0 = 1_700_000_000 * S
pytestmark = pytest.mark.django_db(transaction=True)


def _periodic(channel, start, values, interval=S // 1000):
    return periodic(channel, start, values, interval)


def _flushed_twice(identity):
    """Channel 1's samples 0-99 flushed, then 100-199 (late data for the same chunk: a new object)."""
    writer = ChunkWriter(identity)
    writer.add("periodic", _periodic(1, T0, list(range(100))))
    writer.flush()
    writer.add("periodic", _periodic(1, T0 + 100 * S // 1000, list(range(100, 200))))
    writer.flush()


def _samples(identity, channel):
    stream = reader.open_identity(identity, "periodic", None)
    return [
        v
        for lst in stream.lists()
        for item in lst.periodic_data
        for v in struct.unpack(f"<{item.samples}h", item.buffer)
    ]


def test_a_flush_is_one_new_object_and_rows_name_it(s3_store, settings):
    writer = ChunkWriter("car/1")
    writer.add("periodic", _periodic(1, T0, list(range(3000))))
    writer.add("periodic", _periodic(2, T0, list(range(3000))))
    writer.flush()
    keys = bucket_keys(s3_store["RTA_S3_ENDPOINT_URL"], s3_store["RTA_S3_BUCKET"], "store/chunks/")
    assert len(keys) == 1 and "car" not in keys[0]  # named by the identity's hash
    rows = list(Chunk.objects.all())
    assert {r.file for r in rows} == {keys[0][len("store/") :]}
    assert not (settings.RTA_DATA_PATH / "chunks").exists()  # nothing on local disk
    assert _samples("car/1", 1) == list(range(3000)) * 2  # both channels, served in channel order


def test_late_data_merges_into_a_new_object_and_compaction_cleans_up(s3_store):
    _flushed_twice("merge")
    endpoint, bucket = s3_store["RTA_S3_ENDPOINT_URL"], s3_store["RTA_S3_BUCKET"]
    first, second = sorted(bucket_keys(endpoint, bucket, "store/chunks/"))
    assert _samples("merge", 1) == list(range(200))
    assert Chunk.objects.get().file == second[len("store/") :]

    # The first object is named by no row: retired by a first run, deleted once its grace is over.
    summary = compaction.compact(grace_seconds=3600)
    assert summary.removed == 0
    assert sorted(bucket_keys(endpoint, bucket, "store/")) == sorted([first, second, "store/retired/" + first[6:]])
    assert _samples("merge", 1) == list(range(200))
    summary = compaction.compact(grace_seconds=0)
    assert summary.removed == 1
    assert bucket_keys(endpoint, bucket, "store/") == [second]
    assert _samples("merge", 1) == list(range(200))


def test_compaction_rewrites_an_object_holding_garbage(s3_store):
    writer = ChunkWriter("rewrite")
    writer.add("periodic", _periodic(1, T0, list(range(100))))
    writer.add("periodic", _periodic(2, T0, list(range(100))))
    writer.flush()
    writer.add("periodic", _periodic(1, T0 + 100 * S // 1000, list(range(100, 200))))
    writer.flush()  # channel 1's chunk moves to a new object: half of the first is garbage
    old = Chunk.objects.get(channel=2).file
    summary = compaction.compact(min_garbage_ratio=0.1, grace_seconds=0)
    assert summary.compacted == 1
    assert Chunk.objects.get(channel=2).file != old
    assert not objects.store().exists(old)
    assert _samples("rewrite", 1) == list(range(200)) + list(range(100))


def test_reads_join_neighbouring_chunks_into_one_ranged_get(s3_store):
    writer = ChunkWriter("ranges")
    for channel in range(20):
        writer.add("periodic", _periodic(channel, T0, list(range(500))))
    writer.flush()
    refs = reader.find_chunks("ranges", "periodic")
    assert len(refs) == 20
    reads = chunks.ObjectReads(refs)
    assert reads.requests_planned == 1
    reads.close()
    before = _requests("get")
    assert len(_samples("ranges", 0)) == 20 * 500
    assert _requests("get") - before == 1


def _requests(op):
    from data_app.store.objects.s3 import REQUESTS

    return REQUESTS.labels(op)._value.get()


def test_a_missing_bucket_is_a_clear_unavailable_error(s3_store, settings):
    settings.RTA_S3_BUCKET = "rta-no-such-bucket"
    writer = ChunkWriter("nobucket")
    writer.add("periodic", _periodic(1, T0, [1, 2, 3]))
    with pytest.raises(ObjectStoreUnavailable, match="bucket does not exist"):
        writer.flush()
    assert not Chunk.objects.exists()  # no row names an object that is not there


def test_reads_that_began_before_compaction_keep_their_objects_for_the_grace_period(s3_store):
    writer = ChunkWriter("grace")
    writer.add("periodic", _periodic(1, T0, list(range(100))))
    writer.flush()
    refs = reader.find_chunks("grace", "periodic")  # a read that queried the index ...
    writer.add("periodic", _periodic(1, T0 + 100 * S // 1000, list(range(100, 200))))
    writer.flush()  # ... then late data moved the chunk to a new object
    compaction.compact(grace_seconds=3600)
    reads = chunks.ObjectReads(refs)
    assert len(reads.read(refs[0])) == refs[0].packed_length  # retired, still there
    reads.close()
    compaction.compact(grace_seconds=0)  # no grace: gone, and a late reader gets a clear "try again"
    reads = chunks.ObjectReads(refs)
    with pytest.raises(ObjectMissing, match="try again"):
        reads.read(refs[0])
    reads.close()
    assert _samples("grace", 1) == list(range(200))


def test_compact_chunks_command_on_the_object_store(s3_store):
    import io

    from django.core.management import call_command

    _flushed_twice("command")
    out = io.StringIO()
    call_command("compact_chunks", "--grace-seconds", "0", stdout=out)
    assert "2 segments examined, 0 compacted, 1 removed" in out.getvalue()
    assert len(list(objects.store().list("chunks/"))) == 1
    assert _samples("command", 1) == list(range(200))


def test_a_flush_failing_after_its_upload_leaves_no_row_and_compaction_removes_the_object(s3_store, monkeypatch):
    from data_app.store import writer as writer_module

    def crash(rows):  # the process dies (or the database fails) between the upload and the index
        raise RuntimeError("crash before the index commit")

    monkeypatch.setattr(writer_module, "_insert_chunks", crash)
    writer = ChunkWriter("crashed")
    writer.add("periodic", _periodic(1, T0, list(range(100))))
    with pytest.raises(RuntimeError):
        writer.flush()
    assert not Chunk.objects.exists()  # no row names the object, let alone a missing one
    assert len(list(objects.store().list("chunks/"))) == 1
    monkeypatch.undo()
    compaction.compact(grace_seconds=0)
    assert list(objects.store().list("chunks/")) == []


def test_compaction_consolidates_many_small_flush_objects_in_reading_order(s3_store):
    writer = ChunkWriter("small-flushes")
    for n in range(6):  # six flushes, each one object holding a window of both channels
        for channel in (1, 2):
            writer.add("periodic", _periodic(channel, T0 + n * 100 * S, list(range(n, n + 100))))
        writer.flush()
    before = reader.find_chunks("small-flushes", "periodic")
    assert len({r.file for r in before}) == 6 and chunks.ObjectReads(before).requests_planned == 12
    summary = compaction.compact(grace_seconds=0)
    assert summary.compacted == 1 and summary.removed == 6
    after = reader.find_chunks("small-flushes", "periodic")
    assert len({r.file for r in after}) == 1
    assert [r.offset for r in after] == sorted(r.offset for r in after)  # channel, then time: one pass
    assert chunks.ObjectReads(after).requests_planned == 1
    assert len(list(objects.store().list("chunks/"))) == 1
    assert _samples("small-flushes", 1) == [v for n in range(6) for v in range(n, n + 100)] * 2
