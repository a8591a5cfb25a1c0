"""Compaction of chunk segment files: garbage reclaimed, data identical, safe beside readers and writers."""

import io
import os
import struct
import threading

import pytest
from django.core.management import CommandError, call_command
from rta.model import data_pb2

from data_app.models import Chunk
from data_app.services.channels import parse_channels
from data_app.store import compaction, reader, segments
from data_app.store.writer import ChunkWriter
from rta_kit import wire
from sessions_app.services.updates import create_or_update_session

S = 1_000_000_000
T0 = 1_700_000_000 * S
KINDS = ("periodic", "timestamped", "row", "events")

pytestmark = pytest.mark.django_db


def periodic(ch, start, n, base=0):
    return data_pb2.PeriodicData(
        channel_id=ch,
        start_timestamp=start,
        interval=S // 1000,
        samples=n,
        buffer=struct.pack(f"<{n}i", *[(base + i) % 100_000 for i in range(n)]),
    )


def write_with_garbage(identity, seconds=12):
    """Every kind, written in two passes over the same windows: each chunk is merged once (old bytes: garbage)."""
    for half in (0, 1):
        writer = ChunkWriter(identity)
        for second in range(seconds):
            for ch in (1, 2):
                writer.add("periodic", periodic(ch, T0 + second * S + half * S // 2, 500, base=second + ch))
            deltas = [0] + [1000 + i % 7 for i in range(1, 400)]
            writer.add(
                "timestamped",
                data_pb2.TimestampedData(
                    channel_id=5,
                    start_timestamp=T0 + second * S + half * S // 2,
                    timestamp_deltas_scale=1000,
                    timestamp_deltas=deltas,
                    buffer=struct.pack(f"<{len(deltas)}d", *range(len(deltas))),
                ),
            )
            writer.add(
                "row",
                data_pb2.RowData(
                    channel_ids=[1, 2], timestamp=T0 + second * S + half, buffer=struct.pack("<hd", second, half)
                ),
            )
            writer.add(
                "events",
                data_pb2.Event(
                    event_definition_id=second, timestamp=T0 + second * S + half, status_text=f"e{second}.{half}"
                ),
            )
        writer.flush()


def read_all(api, identity):
    out = {}
    for kind in KINDS:
        url = f"/rta/v2/sessions/{identity}/data/{kind}" + ("" if kind == "events" else "/0-")
        response = api.get(url)
        assert response.status_code == 200
        out[kind] = [
            (c.start, c.end, c.channel_ids, c.unpacked_length, c.packed)
            for c in wire.read_chunks(b"".join(response.streaming_content))
        ]
    return out


def files_on_disk():
    root = segments.chunks_root()
    return {f"{p.parent.name}/{p.name}": p.stat().st_size for p in root.glob("*/*.seg")}


def live_bytes():
    return {
        name: sum(Chunk.objects.filter(file=name).values_list("packed_length", flat=True)) for name in files_on_disk()
    }


def run_command(*args):
    out = io.StringIO()
    call_command("compact_chunks", *args, stdout=out)
    return out.getvalue()


def test_compaction_reclaims_garbage_and_data_reads_back_identical(api):
    create_or_update_session("car")
    write_with_garbage("car")
    before = read_all(api, "car")
    sizes = files_on_disk()
    (old_name,) = sizes
    garbage = sizes[old_name] - live_bytes()[old_name]
    assert garbage > sizes[old_name] // 3, "the merges left garbage"

    output = run_command()
    assert "1 compacted" in output and "reclaimed" in output

    after_sizes = files_on_disk()
    assert old_name not in after_sizes
    (new_name,) = after_sizes
    assert after_sizes[new_name] == live_bytes()[new_name] == sizes[old_name] - garbage
    assert set(Chunk.objects.values_list("file", flat=True)) == {new_name}
    assert read_all(api, "car") == before
    # Nothing left to do.
    assert "0 compacted" in run_command()


def test_writes_after_compaction_merge_into_compacted_chunks_and_compact_again(api):
    create_or_update_session("car")
    write_with_garbage("car")
    run_command()
    (compacted,) = files_on_disk()
    # Late data into windows whose chunks now live in the compacted segment, plus new data.
    writer = ChunkWriter("car")
    writer.add("periodic", periodic(1, T0 + 3 * S + S // 4, 10, base=7))
    writer.add("periodic", periodic(1, T0 + 40 * S, 10))
    writer.flush()
    files = files_on_disk()
    assert compacted in files and segments.segment_name("car") in files  # a fresh append segment
    expected = read_all(api, "car")
    samples = [
        struct.unpack(f"<{i.samples}i", i.buffer)
        for c in expected["periodic"]
        for i in wire.LIST_TYPES["periodic"].FromString(wire.unpack(c[4], c[3], 1)).periodic_data
    ]
    assert sum(len(s) for s in samples) == 2 * 12 * 1000 + 10  # the late 10 replace samples at their times
    run_command("--min-garbage-ratio", "0")
    assert read_all(api, "car") == expected
    files = files_on_disk()
    assert compacted not in files
    assert all(size == live for size, live in zip(files.values(), live_bytes().values()))


def test_ratio_threshold_identity_filter_and_dry_run(api):
    write_with_garbage("a")
    write_with_garbage("b")
    sizes = files_on_disk()
    assert "0 compacted" in run_command("--min-garbage-ratio", "0.9")
    output = run_command("--dry-run", "--min-garbage-ratio", "0.1")
    assert "2 to compact" in output and "dry run" in output
    assert files_on_disk() == sizes
    run_command("--identity", "a")
    after = files_on_disk()
    assert segments.segment_name("a") not in after
    assert after[segments.segment_name("b")] == sizes[segments.segment_name("b")]
    assert len(after) == 2


def test_orphan_segments_are_removed():
    write_with_garbage("a")
    root = segments.chunks_root()
    digest = segments.segment_name("a").split("/")
    orphan_copy = root / digest[0] / f"{digest[1].split('.')[0]}.deadbeef.seg"  # a crashed compaction's copy
    orphan_copy.write_bytes(b"x" * 1000)
    stale = root / segments.segment_name("gone")  # an append segment whose rows all moved away
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"y" * 500)
    output = run_command("--min-garbage-ratio", "1")  # only what is wholly garbage
    assert "2 removed" in output
    assert not orphan_copy.exists() and not stale.exists()
    assert (root / segments.segment_name("a")).exists()


def test_command_errors():
    with pytest.raises(CommandError):
        call_command("compact_chunks", "--min-garbage-ratio", "1.5", stdout=io.StringIO())
    with compaction._CompactionLock():
        with pytest.raises(CommandError, match="another compaction"):
            call_command("compact_chunks", stdout=io.StringIO())


def test_a_read_in_progress_keeps_its_files(api):
    write_with_garbage("car")
    stream = reader.open_identity("car", "periodic", parse_channels("0-"))
    expected = b"".join(reader.open_identity("car", "periodic", parse_channels("0-")))
    run_command()
    assert not (segments.chunks_root() / segments.segment_name("car")).exists()
    assert b"".join(stream) == expected  # the old segment was unlinked under it, still readable


def test_stale_index_rows_are_read_again():
    write_with_garbage("car")
    run_command()
    stale = reader.find_chunks("car", "events")
    write_with_garbage("car")  # merge everything again: the compacted segment becomes all garbage
    run_command()  # ... and is removed
    assert not (segments.chunks_root() / stale[0].file).exists()
    calls = []

    def plan():
        calls.append(1)
        refs = stale if len(calls) == 1 else reader.find_chunks("car", "events")
        return [(ref, None) for ref in refs]

    stream = reader.open_stream("events", ["car"], plan)
    assert len(calls) == 2
    assert b"".join(stream) == b"".join(reader.open_identity("car", "events"))


@pytest.mark.django_db(transaction=True)
def test_compaction_beside_a_writer_loses_nothing():
    """Late data keeps merging into the same chunks while compaction runs over and over."""
    write_with_garbage("busy", seconds=4)
    errors, done = [], threading.Event()
    rounds = 25

    def write():
        from django.db import connection

        try:
            for i in range(rounds):
                writer = ChunkWriter("busy")
                writer.add("events", data_pb2.Event(event_definition_id=1000 + i, timestamp=T0 + i * S // 10 + 5))
                writer.add("periodic", periodic(3, T0 + i * S // 10, 5, base=i))
                writer.flush()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    passes = 0
    while not done.is_set() or passes < 3:
        compaction.compact("busy", min_garbage_ratio=0)
        passes += 1
    thread.join()
    assert not errors
    events = [e.event_definition_id for lst in reader.open_identity("busy", "events").lists() for e in lst.events]
    assert set(range(1000, 1000 + rounds)) <= set(events)
    lists = reader.open_identity("busy", "periodic", parse_channels("3")).lists()
    ch3 = [item for lst in lists for item in lst.periodic_data]
    assert sum(i.samples for i in ch3) == 5 * rounds
    compaction.compact("busy", min_garbage_ratio=0)
    on_disk = files_on_disk()
    assert sum(on_disk.values()) == sum(live_bytes().values())
    assert set(on_disk) == set(Chunk.objects.values_list("file", flat=True))
    assert all(os.path.exists(segments.chunks_root() / f) for f in on_disk)
