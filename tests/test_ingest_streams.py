"""The Advanced Streams mapping and stream state machine, fed message by message (no broker)."""

import io
import uuid

import orjson
import pytest
from advanced_streams import codec_pb2
from django.core.management import call_command

from config_app.services import dependencies
from data_app.ingest.ingestor import Ingestor
from data_app.ingest.runner import encode_line
from data_app.models import Chunk
from sessions_app.models import Session
from tests.test_ingest_support import (
    ATLAS,
    ATLAS_ID,
    EPOCH,
    FORMAT_A_ID,
    FORMAT_B,
    FORMAT_B_ID,
    MS,
    SessionStream,
    assert_session_complete,
    publish_dependencies,
    read_data,
    session_json,
)

pytestmark = pytest.mark.django_db(transaction=True)
DEPENDENCIES = {"dataFormat": [FORMAT_B_ID], "atlasConfiguration": [ATLAS_ID]}


class Feed:
    """Feeds messages of one stream to an Ingestor with increasing offsets."""

    def __init__(self, ingestor=None, stream="s", session_id=None):
        self.ingestor = ingestor or Ingestor(retry_seconds=0)
        self.stream = stream
        self.session_id = session_id or str(uuid.uuid4())
        self.offset = 0

    def send(self, kind, value=b"", offset=None):
        if isinstance(value, dict):
            value = orjson.dumps(value)
        self.offset = self.offset + 1 if offset is None else offset
        self.ingestor.process(f"{kind}:{self.stream}".encode(), value, 0, self.offset)

    def session(self, offset=None, **fields):
        self.send("session", {"id": self.session_id, "state": "open", "dependencies": DEPENDENCIES, **fields}, offset)

    def samples(self, times, values, parameter="pBrake:Chassis", fmt=FORMAT_B_ID):
        self.send(
            "tsamples",
            {"feed": "raw", "format": fmt, "data": {parameter: {"values": values, "epoch": EPOCH, "time": times}}},
        )

    @property
    def stats(self):
        return self.ingestor.stats


def stored(api, identity, channel=0):
    channels, _ = read_data(api, identity)
    return [(t - EPOCH, v) for t, v in channels.get(channel, [])]


def test_a_whole_recorded_session_through_the_command(api, tmp_path):
    publish_dependencies()
    stream = SessionStream("file", codec="protobuf", seed=11)
    path = tmp_path / "recorded.txt"
    path.write_bytes(b"".join(encode_line(k, v) for k, v in stream.messages) + b"tdata:file\t{oops\n")
    out = io.StringIO()
    call_command("ingest_streams", "--file", str(path), stdout=out)
    assert_session_complete(api, stream)
    assert "Ingest summary" in out.getvalue() and "bad json 1" in out.getvalue()


def test_partial_stream_is_recorded_from_its_session_message(api):
    publish_dependencies()
    feed = Feed()
    feed.samples([1 * MS], [1.0])  # no $start, no session yet: cannot be placed
    feed.session()
    feed.samples([2 * MS, 3 * MS], [2.0, 3.0])
    feed.ingestor.flush()
    assert feed.stats.partial_streams == 1
    assert feed.stats.skipped["before session"] == 1
    assert stored(api, feed.session_id) == [(2 * MS, 2.0), (3 * MS, 3.0)]


def test_messages_after_end_are_ignored_until_the_next_start(api):
    publish_dependencies()
    feed = Feed()
    feed.send("$start")
    feed.session()
    feed.samples([1 * MS], [1.0])
    feed.send("$end")
    assert session_json(api, feed.session_id)["state"] == "closed"
    feed.samples([2 * MS], [2.0])
    feed.session()
    assert feed.stats.skipped["after $end"] == 2
    assert session_json(api, feed.session_id)["state"] == "closed"
    feed.send("$start")
    feed.session()
    feed.samples([3 * MS], [3.0])
    feed.send("$end")
    assert stored(api, feed.session_id) == [(1 * MS, 1.0), (3 * MS, 3.0)]


def test_unknown_format_feed_or_parameter_is_malformed_and_writes_nothing(api):
    publish_dependencies()
    feed = Feed()
    feed.send("$start")
    feed.session()
    feed.samples([1 * MS], [1.0], fmt="unknown")
    feed.samples([1 * MS], [1.0], fmt=FORMAT_A_ID)  # published, but not a dependency of this session
    feed.send("tsamples", {"feed": "nope", "format": FORMAT_B_ID, "data": {}})
    # One good parameter and one unknown: the whole message is refused.
    feed.send(
        "tsamples",
        {
            "feed": "raw",
            "format": FORMAT_B_ID,
            "data": {
                "pBrake:Chassis": {"values": [1.0], "epoch": EPOCH, "time": [1 * MS]},
                "nope:Chassis": {"values": [1.0], "epoch": EPOCH, "time": [1 * MS]},
            },
        },
    )
    feed.send("tdata", {"feed": "raw", "format": FORMAT_B_ID, "time": [1], "data": [{"status": [1], "avg": [1]}]})
    feed.send("$end")
    assert dict(feed.stats.malformed) == {
        "unknown format": 2,
        "unknown feed": 1,
        "unknown parameter": 1,
        "wrong types": 1,
    }
    assert stored(api, feed.session_id) == []
    assert session_json(api, feed.session_id)["state"] == "closed"


def test_data_waits_for_dependencies_then_records(api):
    feed = Feed()
    feed.send("$start")
    feed.session()
    assert "configBindings" not in session_json(api, feed.session_id)
    feed.samples([1 * MS], [1.0])
    assert feed.stats.skipped["not recordable"] == 1
    dependencies.publish(dependencies.DATA_FORMAT, FORMAT_B, FORMAT_B_ID)
    dependencies.publish(dependencies.ATLAS_CONFIGURATION, ATLAS, ATLAS_ID)
    feed.samples([2 * MS], [2.0])  # dependencies are looked up again (retry_seconds=0) and bound
    feed.send("$end")
    assert session_json(api, feed.session_id)["configBindings"] == [
        {"identifier": f"advanced-streams/v1/{FORMAT_B_ID}/{ATLAS_ID}", "channelOffset": 0}
    ]
    assert stored(api, feed.session_id) == [(2 * MS, 2.0)]


def test_a_session_without_an_atlas_configuration_records_no_data(api):
    publish_dependencies()
    feed = Feed()
    feed.send("session", {"id": feed.session_id, "state": "open", "dependencies": {"dataFormat": [FORMAT_B_ID]}})
    feed.samples([1 * MS], [1.0])
    assert feed.stats.skipped["not recordable"] == 1
    assert Session.objects.filter(identity=feed.session_id).exists()
    assert not Chunk.objects.filter(identity=feed.session_id).exists()


def test_session_mapping_defaults_merges_and_never_rolls_back(api):
    publish_dependencies()
    feed = Feed()
    feed.session(
        offset=10,
        identifier="first",
        details={"A": "1"},
        activity={"start": "2023-11-14T22:13:20.5+01:00", "durationNanos": 2_000_000_000},
    )
    session = session_json(api, feed.session_id)
    assert session["type"] == "StreamSession" and session["quality"] == 0.9
    assert session["timestamp"] == "2023-11-14T22:13:20.5+01:00"
    start = EPOCH + 500 * MS - 3600 * 10**9
    assert session["timeRange"] == {"startTime": start, "endTime": start + 2_000_000_000}
    feed.session(
        offset=20,
        identifier="second",
        state="closed",
        type="Test",
        quality=0.5,
        details={"B": "2"},
        model={"group": "grp", "version": 7},
    )
    session = session_json(api, feed.session_id)
    assert (session["identifier"], session["state"], session["type"], session["quality"]) == (
        "second",
        "closed",
        "Test",
        0.5,
    )
    assert session["details"] == {"A": "1", "B": "2"} and (session["group"], session["version"]) == ("grp", "7")
    # An older message (a replay from an earlier offset) changes nothing.
    feed.session(offset=15, identifier="old", details={"A": "old"})
    assert session_json(api, feed.session_id) == session
    assert Session.objects.get(identity=feed.session_id).last_sequence == 20
    # A message the session service refuses is counted and changes nothing either.
    feed.session(offset=30, quality=2.0, identifier="bad")
    assert feed.stats.malformed["rejected"] == 1
    assert session_json(api, feed.session_id) == session


def test_duplicates_are_dropped_and_late_data_kept(api):
    publish_dependencies()
    feed = Feed()
    feed.session()
    feed.samples([10 * MS, 20 * MS, 30 * MS], [1.0, 2.0, 3.0])
    feed.samples([10 * MS, 20 * MS, 30 * MS], [1.0, 2.0, 3.0])  # sent twice (producer retry) before any flush
    feed.ingestor.flush()
    feed.samples([30 * MS, 40 * MS], [9.0, 4.0])  # overlaps the stored data by one sample: first stored wins
    feed.samples([5 * MS, 15 * MS], [0.5, 1.5])  # late, never stored: kept
    feed.ingestor.flush()
    assert stored(api, feed.session_id) == [
        (5 * MS, 0.5),
        (10 * MS, 1.0),
        (15 * MS, 1.5),
        (20 * MS, 2.0),
        (30 * MS, 3.0),
        (40 * MS, 4.0),
    ]
    assert feed.stats.duplicates == 4
    # Unsorted times within a message are sorted with their values.
    feed.samples([70 * MS, 50 * MS, 60 * MS], [7.0, 5.0, 6.0])
    feed.ingestor.flush()
    assert stored(api, feed.session_id)[-3:] == [(50 * MS, 5.0), (60 * MS, 6.0), (70 * MS, 7.0)]


def test_codec_parameters_sharing_unsorted_timestamps_each_keep_their_own_values(api):
    # Both parameters carry the same timestamp bytes (one decoded array), unsorted: with the same
    # epoch they share one timing; with different epochs (second message) they must not.
    publish_dependencies()
    feed = Feed()
    feed.session()
    message = codec_pb2.ParameterSamplesMessage(dataFormatId=FORMAT_B_ID, feed="raw")
    for index, values in ((0, [7.0, 5.0, 6.0]), (1, [70.0, 50.0, 60.0])):
        entry = message.parameters[index]
        entry.epoch_nanos = EPOCH
        entry.timestamps_nanos.extend([70 * MS, 50 * MS, 60 * MS])
        entry.values.extend(values)
    feed.send("tsamples", message.SerializeToString())
    message.parameters[0].epoch_nanos = EPOCH + 100 * MS
    message.parameters[1].epoch_nanos = EPOCH + 200 * MS
    feed.send("tsamples", message.SerializeToString())
    feed.ingestor.flush()
    assert feed.stats.samples == 12 and not feed.stats.malformed
    assert stored(api, feed.session_id, 0) == [
        (50 * MS, 5.0),
        (60 * MS, 6.0),
        (70 * MS, 7.0),
        (150 * MS, 5.0),
        (160 * MS, 6.0),
        (170 * MS, 7.0),
    ]
    assert stored(api, feed.session_id, 1) == [
        (50 * MS, 50.0),
        (60 * MS, 60.0),
        (70 * MS, 70.0),
        (250 * MS, 50.0),
        (260 * MS, 60.0),
        (270 * MS, 70.0),
    ]


def test_events_are_deduplicated_by_time_and_definition(api):
    publish_dependencies()
    feed = Feed()
    feed.session()
    for event_id in ("IO2-2B02:TAG320BIOS", "IO2-2B02:TAG320BIOS", "Other:App"):
        feed.send("events", {"epoch": EPOCH, "time": 5 * MS, "id": event_id, "status": "On", "values": [1]})
    feed.ingestor.flush()
    feed.send("events", {"epoch": EPOCH, "time": 5 * MS, "id": "Other:App", "status": "On", "values": [1]})
    feed.ingestor.flush()
    _, events = read_data(api, feed.session_id)
    assert sorted((e[2], e[3]) for e in events) == [("App", "On"), ("TAG320BIOS", "On")]
    assert feed.stats.duplicates == 2


def test_laps_span_from_trigger_to_trigger_and_the_last_ends_with_the_session(api):
    publish_dependencies()
    feed = Feed()
    feed.send("$start")
    feed.session(activity={"start": "2023-11-14T22:13:20Z", "durationNanos": 0})
    feed.send("lap", {"number": 0, "epoch": EPOCH, "time": 0, "type": "outLap", "triggerSource": 3})
    feed.send("lap", {"number": 1, "epoch": EPOCH, "time": 100 * MS, "type": "fastLap", "triggerSource": 0})
    feed.samples([150 * MS, 250 * MS], [1.0, 2.0])
    laps = session_json(api, feed.session_id)["markers"]
    assert [(m["label"], m["startTime"] - EPOCH, m.get("endTime")) for m in laps] == [
        ("Lap 0", 0, EPOCH + 100 * MS),
        ("Lap 1", 100 * MS, None),
    ]
    feed.send("$end")
    laps = session_json(api, feed.session_id)["markers"]
    assert laps[1]["endTime"] == EPOCH + 250 * MS  # the session's end (its data)
    assert all(m["category"] == "Laps" for m in laps)


def test_a_closed_state_flushes_and_sync_is_a_flush_point(api):
    publish_dependencies()
    feed = Feed()
    feed.session()
    feed.samples([1 * MS], [1.0])
    assert not Chunk.objects.filter(identity=feed.session_id).exists()
    feed.send("sync")
    assert stored(api, feed.session_id) == [(1 * MS, 1.0)]
    feed.samples([2 * MS], [2.0])
    feed.session(state="truncated")
    assert stored(api, feed.session_id) == [(1 * MS, 1.0), (2 * MS, 2.0)]
    assert session_json(api, feed.session_id)["state"] == "truncated"
    feed.send("$end")
    assert session_json(api, feed.session_id)["state"] == "truncated"  # $end keeps a closed state it was given


def test_unknown_types_are_ignored():
    feed = Feed()
    feed.send("weather", b"\x00\x01binary")
    feed.send("$future", b"")
    assert feed.stats.skipped["unknown type"] == 2 and not feed.stats.malformed


def test_silent_streams_are_forgotten_and_picked_up_again(api):
    publish_dependencies()
    feed = Feed(Ingestor(retry_seconds=0, idle_seconds=0))
    feed.send("$start")
    feed.session()
    feed.samples([1 * MS], [1.0])
    feed.ingestor.flush()  # stored, then the (idle) stream is forgotten
    assert not feed.ingestor.streams and not feed.ingestor.sessions
    assert feed.ingestor.commit_offsets() == {0: feed.offset + 1}
    feed.samples([2 * MS], [2.0])  # no context any more: skipped until the next session message
    feed.session()
    feed.samples([1 * MS, 3 * MS], [1.0, 3.0])
    feed.ingestor.flush()
    assert stored(api, feed.session_id) == [(1 * MS, 1.0), (3 * MS, 3.0)]
    assert feed.stats.skipped["before session"] == 1 and feed.stats.duplicates == 1


def test_a_background_flush_reports_its_offsets_only_once_its_data_is_stored():
    """The runners' flush rule: a flush runs beside the processing of later messages; the offsets it
    covers (taken when it began, not later ones) are reported for commit only when they are durable."""
    from data_app.ingest.runner import Flusher

    publish_dependencies()
    feed = Feed()
    reported = []

    def on_flushed(offsets, _lag_mark):
        stored_times = sorted(
            t for c in Chunk.objects.filter(identity=feed.session_id) for t in (c.start_time, c.end_time)
        )
        reported.append((offsets, Chunk.objects.filter(identity=feed.session_id).count(), stored_times))

    flusher = Flusher(feed.ingestor, flush_seconds=0, on_flushed=on_flushed)
    feed.session()
    feed.samples([0, 1 * MS], [1.0, 2.0])
    covered = feed.ingestor.commit_offsets()
    flusher.maybe()  # starts a flush in the background: nothing reported yet
    assert reported == []
    feed.samples([2 * MS, 3 * MS], [3.0, 4.0])  # processed while that flush runs
    flusher.settle()
    ((offsets, chunks, times),) = reported
    # Durable when reported: the first batch; the second, processed meanwhile, is not in that flush.
    assert offsets == covered and chunks >= 1 and (times[0], times[-1]) == (EPOCH, EPOCH + 1 * MS)
    flusher.maybe(force=True)  # the end: everything, synchronously
    assert len(reported) == 2 and reported[-1][2][-1] == EPOCH + 3 * MS


def _with_float_times(value):
    """A JSON message as the official Python client writes it: times as floats (``10000000.0``)."""
    document = orjson.loads(value)
    if isinstance(document.get("time"), list):
        document["time"] = [float(t) for t in document["time"]]
    elif "time" in document:
        document["time"] = float(document["time"])
    for entry in document.get("data", {}).values() if isinstance(document.get("data"), dict) else ():
        entry["time"] = [float(t) for t in entry["time"]]
    text = orjson.dumps(document)
    assert b".0" in text or b"e" in text
    return text


def test_float_times_are_stored_and_non_integral_ones_counted_as_malformed(api, tmp_path, caplog):
    publish_dependencies()
    stream = SessionStream("floats", codec="json", seed=5)
    timed = ("tsamples", "tdata", "events", "lap")
    messages = [
        (key, _with_float_times(value) if key.decode().partition(":")[0] in timed else value)
        for key, value in stream.messages
    ]
    bad = [
        b'{"feed":"raw","format":"%s","data":{"pBrake:Chassis":{"epoch":%d,"time":[%s],"values":[1.0]}}}'
        % (FORMAT_B_ID.encode(), EPOCH, time)
        for time in (b"1.5", b"1e19", b"1e400")  # non-integral, beyond int64, infinite (not JSON)
    ]
    messages[4:4] = [(b"tsamples:floats", value) for value in bad]
    path = tmp_path / "python-client.txt"
    path.write_bytes(b"".join(encode_line(k, v) for k, v in messages))
    out = io.StringIO()
    call_command("ingest_streams", "--file", str(path), stdout=out)
    assert_session_complete(api, stream)  # every sample, event and lap, at its time; nothing of the bad ones
    summary = out.getvalue()
    assert "bad json 1, wrong types 2" in summary
    logged = [r.getMessage() for r in caplog.records if "skipped message 'tsamples:floats'" in r.getMessage()]
    assert len(logged) == 3 and "time[0] must be a whole number (64-bit integer), got 1.5" in logged[0]


def _summary_row(text, name):
    """A value of the command's summary table."""
    rows = (line.split("│") for line in text.splitlines())
    return next(cells[2].strip() for cells in rows if len(cells) == 4 and cells[1].strip() == name)


def test_session_messages_leaving_out_dependencies_keep_recording_with_true_warnings_and_counts(api, tmp_path, caplog):
    publish_dependencies()
    session_id = str(uuid.uuid4())

    def session(state, **fields):
        return b"session:s", orjson.dumps({"id": session_id, "state": state, **fields})

    def samples(*times):
        values = {"epoch": EPOCH, "time": list(times), "values": [float(t) for t in times]}
        return b"tsamples:s", orjson.dumps({"feed": "raw", "format": FORMAT_B_ID, "data": {"pBrake:Chassis": values}})

    messages = [
        (b"$start:s", b""),
        session("open", dependencies=DEPENDENCIES),
        samples(1 * MS),
        session("open"),  # a heartbeat without dependencies: those declared before still hold
        samples(2 * MS),
        session("closed"),  # closing, without dependencies: flushes the data
        (b"$end:s", b""),
    ]
    path = tmp_path / "recorded.txt"
    path.write_bytes(b"".join(encode_line(k, v) for k, v in messages))
    out = io.StringIO()
    call_command("ingest_streams", "--file", str(path), stdout=out)
    assert stored(api, session_id) == [(1 * MS, 1.0 * MS), (2 * MS, 2.0 * MS)]
    assert session_json(api, session_id)["state"] == "closed"
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    summary = out.getvalue()
    assert _summary_row(summary, "samples").startswith("2 ") and _summary_row(summary, "flushes") == "1"
    assert _summary_row(summary, "skipped") == "0" and _summary_row(summary, "malformed") == "0"


def test_a_session_that_never_declares_dependencies_is_warned_about_once_by_name(api, caplog):
    publish_dependencies()
    feed = Feed()
    for _ in range(3):
        feed.send("session", {"id": feed.session_id, "state": "open"})
        feed.samples([1 * MS], [1.0])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"session {feed.session_id!r} cannot record data yet (its data is skipped): "
        "the session declares no dataFormat or no atlasConfiguration dependency"
    ]
    assert feed.stats.skipped["not recordable"] == 3


def test_a_restart_resumes_from_the_session_message_that_declared_the_dependencies(api):
    publish_dependencies()
    feed = Feed()
    feed.send("$start")
    feed.session()  # offset 2: declares the dependencies
    feed.samples([1 * MS], [1.0])
    feed.send("session", {"id": feed.session_id, "state": "open"})  # offset 4: a heartbeat without them
    feed.samples([2 * MS], [2.0])
    feed.ingestor.flush()
    resume = feed.ingestor.commit_offsets()[0]
    assert resume == 2
    # A new consumer (after a crash) reads from there again: the data after the heartbeat is placed too.
    again = Feed(session_id=feed.session_id)
    for kind, value in (
        ("session", {"id": feed.session_id, "state": "open", "dependencies": DEPENDENCIES}),
        ("tsamples", None),
        ("session", {"id": feed.session_id, "state": "open"}),
    ):
        if value is None:
            again.samples([1 * MS], [1.0])
        else:
            again.send(kind, value)
    again.samples([2 * MS, 3 * MS], [2.0, 3.0])
    again.ingestor.flush()
    assert stored(api, feed.session_id) == [(1 * MS, 1.0), (2 * MS, 2.0), (3 * MS, 3.0)]
    assert again.stats.duplicates == 2 and not again.stats.skipped
