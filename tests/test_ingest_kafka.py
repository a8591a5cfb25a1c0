"""Advanced Streams ingest from a real Kafka-protocol broker (librdkafka's mock cluster on loopback).

Two sessions on interleaved streams (one JSON, one protobuf codec) with malformed messages mixed in,
read back through REST; replays that must change nothing; and the real command killed mid-stream
and restarted.
"""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from data_app.models import Chunk
from sessions_app.models import Marker, Session
from tests.test_ingest_support import (
    MALFORMED,
    SessionStream,
    assert_session_complete,
    ingest_topic,
    interleave,
    kafka,  # noqa: F401  (fixture)
    publish_dependencies,
    read_data,
    session_json,
)

pytestmark = pytest.mark.django_db(transaction=True)
PROJECT = Path(__file__).resolve().parent.parent


def produce_sessions(kafka, topic, streams, malformed=()):
    """Stream i goes to partition i; malformed messages go to the first stream's partition after its first part."""
    for partition, stream in enumerate(streams):
        messages = list(stream.messages)
        if partition == 0:
            at = len(stream.parts[0])
            messages[at:at] = list(malformed)
        kafka.produce(topic, messages, partition)
    return sum(len(s.messages) for s in streams) + len(malformed)


def snapshot(api, streams):
    out = {}
    for stream in streams:
        session = session_json(api, stream.session_id)
        session.pop("details", None)  # "Beat" differs by design only if metadata rolled back; checked separately
        out[stream.session_id] = (
            session,
            read_data(api, stream.session_id),
            Chunk.objects.filter(identity=stream.session_id).count(),
        )
    return out


def test_two_interleaved_sessions_with_malformed_messages(kafka, api):
    publish_dependencies()
    topic = kafka.create_topic(f"aas-{uuid.uuid4().hex[:8]}")
    s1, s2 = SessionStream("s1", codec="json", seed=1), SessionStream("s2", codec="protobuf", seed=2)
    # Interleave the streams on one partition too: what matters is per-stream order.
    malformed = list(MALFORMED.values())
    count = produce_sessions(kafka, topic, [s1, s2], malformed)
    ingestor = ingest_topic(kafka, topic, "g-main", count)

    for stream in (s1, s2):
        assert_session_complete(api, stream)
    stats = ingestor.stats
    assert dict(stats.malformed) == {reason: 1 for reason in MALFORMED}
    assert stats.samples == sum(len(v) for s in (s1, s2) for v in s.expected.values())
    assert stats.duplicates == 0
    assert stats.closed == 2
    # Offsets were committed up to the end of both partitions (every stream ended).
    assert kafka.committed(topic, "g-main") == kafka.end_offsets(topic)


def test_interleaved_on_one_partition(kafka, api):
    publish_dependencies()
    topic = kafka.create_topic(f"aas-{uuid.uuid4().hex[:8]}")
    s1, s2 = SessionStream("a", codec="protobuf", seed=3), SessionStream("b", codec="json", seed=4)
    messages = interleave(s1.messages, s2.messages)
    kafka.produce(topic, messages, 0)
    ingest_topic(kafka, topic, "g-one", len(messages))
    for stream in (s1, s2):
        assert_session_complete(api, stream)


def test_replaying_the_topic_changes_nothing(kafka, api, tmp_path):
    from data_app.ingest.ingestor import Ingestor
    from data_app.ingest.runner import encode_line, replay_file

    publish_dependencies()
    topic = kafka.create_topic(f"aas-{uuid.uuid4().hex[:8]}")
    streams = [SessionStream("r1", seed=5), SessionStream("r2", codec="protobuf", seed=6)]
    count = produce_sessions(kafka, topic, streams, list(MALFORMED.values()))
    ingest_topic(kafka, topic, "g-first", count)
    first = snapshot(api, streams)
    sequences = dict(Session.objects.values_list("identity", "last_sequence"))

    # The whole topic again under another group, twice.
    for group in ("g-second", "g-third"):
        again = ingest_topic(kafka, topic, group, count)
        assert again.stats.samples == 0 and again.stats.events == 0
        assert again.stats.duplicates == sum(len(v) for s in streams for v in s.expected.values()) + sum(
            len(s.expected_events) for s in streams
        )
        assert snapshot(api, streams) == first
    assert dict(Session.objects.values_list("identity", "last_sequence")) == sequences
    for stream in streams:
        assert_session_complete(api, stream)
        assert session_json(api, stream.session_id)["details"]["Beat"] == "3"  # the last heartbeat's details

    # A recorded file of the same streams goes through the same code path: nothing new either.
    path = tmp_path / "recorded.txt"
    path.write_bytes(b"".join(encode_line(k, v) for k, v in interleave(*[s.messages for s in streams])))
    replayed = Ingestor()
    replay_file(replayed, path)
    assert replayed.stats.samples == 0
    assert snapshot(api, streams) == first


def _database_url():
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _command(kafka, topic, group, *extra):
    env = {
        **os.environ,
        "RTA_DATABASE_URL": _database_url(),
        "RTA_DATA_PATH": str(settings.RTA_DATA_PATH),
        "RTA_LOG_LEVEL": "WARNING",
        "RTA_DATABASE_POOL_SIZE": "0",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "ingest_streams",
            "--bootstrap",
            kafka.bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--flush-seconds",
            "0.2",
            "-X",
            "log_level=3",
            # A killed member blocks the group until its session times out: keep that short.
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
            *extra,
        ],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for(condition, timeout, what, process=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"ingest exited early ({process.returncode}): {process.stdout.read().decode()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(kafka, api, postgres):
    publish_dependencies()
    topic = kafka.create_topic(f"aas-{uuid.uuid4().hex[:8]}")
    streams = [
        SessionStream("k1", seed=7, messages_per_part=12),
        SessionStream("k2", codec="protobuf", seed=8, messages_per_part=12),
    ]
    for partition, stream in enumerate(streams):
        kafka.produce(topic, stream.parts[0], partition)

    first = _command(kafka, topic, "g-kill")
    try:
        # Wait until the first part is stored and committed, then send more and kill it while it reads them.
        _wait_for(
            lambda: all(kafka.committed(topic, "g-kill").get(p, -1) > 0 for p in (0, 1)), 60, "the first commit", first
        )
        for partition, stream in enumerate(streams):
            kafka.produce(topic, stream.parts[1], partition)
        _wait_for(lambda: Chunk.objects.filter(identity=streams[0].session_id).count() > 0, 60, "stored data", first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert all(s["state"] == "open" for s in (session_json(api, x.session_id) for x in streams))

    for partition, stream in enumerate(streams):
        kafka.produce(topic, stream.parts[2], partition)
    second = _command(kafka, topic, "g-kill")
    try:
        # Everything read, stored and committed (every stream ended): then it is stopped.
        _wait_for(lambda: kafka.committed(topic, "g-kill") == kafka.end_offsets(topic), 120, "the last commit", second)
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, out.decode()
    # It read again what the killed process had stored (committed offsets stay at or before the last
    # session message of an open stream) and dropped it as duplicate.
    duplicates = re.search(rb"duplicates dropped\W+([\d,]+)", out)
    assert duplicates and int(duplicates.group(1).replace(b",", b"")) > 0, out.decode()
    for stream in streams:
        assert_session_complete(api, stream)
    assert kafka.committed(topic, "g-kill") == kafka.end_offsets(topic)


def test_sigterm_stops_cleanly_after_flushing_and_committing(kafka, api, postgres):
    publish_dependencies()
    topic = kafka.create_topic(f"aas-{uuid.uuid4().hex[:8]}")
    stream = SessionStream("t1", seed=9)
    kafka.produce(topic, stream.parts[0] + stream.parts[1], 0)
    process = _command(kafka, topic, "g-term", "--flush-seconds", "3600")  # only the stop flushes
    try:
        # The last lap of what was produced: every message before it has been read (nothing is stored yet).
        last_lap = Marker.objects.filter(session_id=stream.session_id, label="Lap 2")
        _wait_for(last_lap.exists, 60, "the messages to be read", process)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out.decode()
    assert b"Ingest summary" in out
    channels, _ = read_data(api, stream.session_id)
    assert sum(len(v) for v in channels.values()) > 0
    committed = kafka.committed(topic, "g-term")[0]
    assert committed > 0
