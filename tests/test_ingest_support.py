"""Shared by the ingest tests (no tests here): dependencies, whole recorded sessions, a Kafka mock
cluster, and reading sessions and data back through REST."""

import struct
import time
import uuid

import numpy as np
import orjson
import pytest
from advanced_streams import codec_pb2

from config_app.services import dependencies
from rta_kit import wire

EPOCH = 1_700_000_000_000_000_000
MS = 1_000_000

# Format A (tdata, 100 Hz): channels vCar avg 0, min 1, max 2; nEngine avg 3; gLat avg 4, first 5.
FORMAT_A = {
    "feeds": {
        "": {
            "frequency": 100.0,
            "parameters": [
                {"identifier": "vCar:Chassis", "aggregates": "avg,min,max"},
                {"identifier": "nEngine:Engine", "aggregates": "avg"},
                {"identifier": "gLat:Chassis", "aggregates": ["first", "avg"]},
            ],
        }
    }
}
# Format B (tsamples, raw): channels pBrake 0, TOil 1 (bound at offset 6 after format A).
FORMAT_B = {"feeds": {"raw": {"frequency": 1000.0, "parameters": ["pBrake:Chassis", "TOil:Engine"]}}}
ATLAS = {
    "appGroups": {
        "Chassis": {
            "groups": {
                "Dynamics": {
                    "parameters": {
                        "vCar:Chassis": {
                            "name": "vCar",
                            "description": "Car speed",
                            "units": "kph",
                            "minimumValue": 0,
                            "maximumValue": 400,
                            "conversion": "kph",
                        }
                    },
                    "groups": {"Brakes": {"parameters": {"pBrake:Chassis": {"name": "pBrake", "units": "bar"}}}},
                }
            }
        }
    },
    "conversions": {"kph": {"unit": "kph", "format": "%5.1f", "rational": {"coeffs": [0, 1, 0, 0, 1, 0]}}},
    "events": {"IO2-2B02:TAG320BIOS": {"description": "Door open", "priority": "high"}},
}
FORMAT_A_ID, FORMAT_B_ID, ATLAS_ID = "fmtA0000", "fmtB0000", "atlas000"
CHANNELS = 8


def publish_dependencies():
    dependencies.publish(dependencies.DATA_FORMAT, FORMAT_A, FORMAT_A_ID)
    dependencies.publish(dependencies.DATA_FORMAT, FORMAT_B, FORMAT_B_ID)
    dependencies.publish(dependencies.ATLAS_CONFIGURATION, ATLAS, ATLAS_ID)


def dumps(document):
    return orjson.dumps(document)


class SessionStream:
    """The messages of one whole recorded session on one stream, and the data they must store.

    ``expected[channel]`` is the sorted list of (time, value) the session must read back;
    ``expected_events`` the (time, event id, status, values) it must hold.
    """

    def __init__(self, stream_id, codec="json", seed=1, messages_per_part=8, session_id=None, t0=EPOCH):
        self.stream_id = stream_id
        self.session_id = session_id or str(uuid.uuid4())
        self.codec = codec
        self.rng = np.random.default_rng(seed)
        self.t0 = t0
        self.expected = {c: [] for c in range(CHANNELS)}
        self.expected_events = []
        self.laps = []
        self.parts = [[], [], []]  # start..., middle..., ...end: so tests can produce in pieces
        self._clock = 0
        self._heartbeats = 0
        self._build(messages_per_part)

    # --- message builders -------------------------------------------------------------------------

    def key(self, kind):
        return f"{kind}:{self.stream_id}".encode()

    def session(self, state="open", duration=None):
        self._heartbeats += 1
        return self.key("session"), dumps(
            {
                "id": self.session_id,
                "state": state,
                "identifier": f"run {self.stream_id}",
                "details": {"Driver": "Test", "Beat": str(self._heartbeats)},
                "model": {"group": "tests", "version": 3},
                "dependencies": {"dataFormat": [FORMAT_A_ID, FORMAT_B_ID], "atlasConfiguration": [ATLAS_ID]},
                "activity": {
                    "start": "2023-11-14T22:13:20Z",
                    "durationNanos": duration if duration is not None else self._clock,
                },
            }
        )

    def tdata(self, n=25):
        times = self._clock + np.arange(n, dtype=np.int64) * 10 * MS
        self._clock = int(times[-1]) + 10 * MS
        status = self.rng.choice([0, 1, 1, 1, 17, 33], size=(3, n))
        columns = {name: self.rng.normal(size=(3, n)).round(6) * 100 for name in ("avg", "min", "max", "first")}
        used = {0: ("avg", "min", "max"), 1: ("avg",), 2: ("avg", "first")}
        channel = {(0, "avg"): 0, (0, "min"): 1, (0, "max"): 2, (1, "avg"): 3, (2, "avg"): 4, (2, "first"): 5}
        for p, names in used.items():
            for name in names:
                for i in range(n):
                    if status[p, i]:
                        self.expected[channel[(p, name)]].append((self.t0 + int(times[i]), float(columns[name][p, i])))
        if self.codec == "json":
            data = [
                {"status": status[p].tolist(), **{name: columns[name][p].tolist() for name in names}}
                for p, names in used.items()
            ]
            data[1]["max"] = columns["max"][1].tolist()  # an aggregate the format does not declare: ignored
            return self.key("tdata"), dumps(
                {"epoch": self.t0, "time": times.tolist(), "data": data, "feed": "", "format": FORMAT_A_ID}
            )
        message = codec_pb2.ParameterDataMessage(
            dataFormatId=FORMAT_A_ID, feed="", epoch_nanos=self.t0, timestamps_nanos=times.tolist()
        )
        for p, names in used.items():
            values = message.parameters[p]
            values.statuses.extend(status[p].tolist())
            for name in names:
                getattr(values, f"{name}_values").extend(columns[name][p].tolist())
        return self.key("tdata"), message.SerializeToString()

    def tsamples(self, n=40):
        out_json, message = {}, codec_pb2.ParameterSamplesMessage(dataFormatId=FORMAT_B_ID, feed="raw")
        for index, (identifier, channel) in enumerate((("pBrake:Chassis", 6), ("TOil:Engine", 7))):
            times = self._clock + np.cumsum(self.rng.integers(1, 3 * MS, size=n))
            values = self.rng.normal(size=n) * 10
            epoch = self.t0 - 1000 * MS  # each parameter carries its own epoch
            rel = times + 1000 * MS
            self.expected[channel] += [(self.t0 + int(t), float(v)) for t, v in zip(times, values)]
            if self.codec == "json":
                out_json[identifier] = {"values": values.tolist(), "epoch": epoch, "time": rel.tolist()}
            else:
                entry = message.parameters[index]
                entry.epoch_nanos = epoch
                entry.timestamps_nanos.extend(rel.tolist())
                entry.values.extend(values.tolist())
        self._clock += 3 * MS * n
        if self.codec == "json":
            return self.key("tsamples"), dumps({"feed": "raw", "format": FORMAT_B_ID, "data": out_json})
        return self.key("tsamples"), message.SerializeToString()

    def event(self):
        t = self._clock + 5 * MS
        values = [float(self.rng.integers(0, 100)), 2.5]
        self.expected_events.append((self.t0 + t, "IO2-2B02:TAG320BIOS", "Active", values))
        if self.codec == "json":
            return self.key("events"), dumps(
                {"epoch": self.t0, "time": t, "id": "IO2-2B02:TAG320BIOS", "status": "Active", "values": values}
            )
        return self.key("events"), codec_pb2.EventMessage(
            epoch_nanos=self.t0, timestamps_nanos=t, id="IO2-2B02:TAG320BIOS", status="Active", values=values
        ).SerializeToString()

    def lap(self, number, lap_type, trigger):
        self.laps.append((self.t0 + self._clock, number, lap_type, trigger))
        return self.key("lap"), dumps(
            {"number": number, "epoch": self.t0, "time": self._clock, "type": lap_type, "triggerSource": trigger}
        )

    def _build(self, per_part):
        first, middle, last = self.parts
        first += [(self.key("$start"), b""), self.session(), self.lap(0, "outLap", 3)]
        for i in range(per_part):
            first.append(self.tdata() if i % 2 else self.tsamples())
        first.append(self.event())
        middle.append(self.lap(1, "fastLap", 0))
        for i in range(per_part):
            middle.append(self.tdata() if i % 2 else self.tsamples())
            if i == per_part // 2:
                middle += [self.session(), self.event(), (self.key("sync"), b"")]
        middle.append(self.lap(2, "inLap", 1))
        for i in range(per_part):
            last.append(self.tdata() if i % 2 else self.tsamples())
        last += [self.event(), self.lap(3, "inLap", 4), self.session(state="closed"), (self.key("$end"), b"")]
        for channel in self.expected:
            self.expected[channel].sort()
        self.expected_events.sort()

    @property
    def messages(self):
        return [m for part in self.parts for m in part]

    def end_time(self):
        return self.t0 + self._clock


def interleave(*lists):
    out = []
    for i in range(max(len(x) for x in lists)):
        out += [x[i] for x in lists if i < len(x)]
    return out


MALFORMED = {
    # (key, value) -> reason counted
    "bad json": (b"tsamples:s1", b'{"feed": "raw", "format": '),
    "wrong types": (b"tdata:s1", dumps({"epoch": EPOCH, "time": ["a"], "data": [], "format": FORMAT_A_ID})),
    "unknown format": (b"tsamples:s1", dumps({"feed": "raw", "format": "nope", "data": {}})),
    "bad protobuf": (b"events:s1", b"\x08\x01\x78\x05garbage"),
    "bad key": (b"no-colon-here", b"{}"),
    "empty value": (b"tdata:s1", b""),
}


# --- Kafka ----------------------------------------------------------------------------------------


class MockKafka:
    """A librdkafka mock cluster (a real Kafka-protocol broker on loopback) and a producer for it."""

    def __init__(self):
        from confluent_kafka import Producer

        self._cluster = Producer({"test.mock.num.brokers": 1, "log_level": 3})
        broker = next(iter(self._cluster.list_topics(timeout=10).brokers.values()))
        self.bootstrap = f"{broker.host}:{broker.port}"
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "log_level": 2})

    def create_topic(self, topic):
        """Auto-created on first use (the mock cluster gives topics 4 partitions; tests use 0 and 1)."""
        metadata = self.producer.list_topics(topic, timeout=10)
        assert len(metadata.topics[topic].partitions) >= 2
        return topic

    def produce(self, topic, messages, partition):
        for key, value in messages:
            self.producer.produce(topic, key=key, value=value, partition=partition)
        assert self.producer.flush(10) == 0

    def end_offsets(self, topic, partitions=(0, 1)):
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "probe", "log_level": 3})
        try:
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        finally:
            consumer.close()

    def committed(self, topic, group, partitions=(0, 1)):
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "log_level": 3})
        try:
            return {
                tp.partition: tp.offset
                for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            }
        finally:
            consumer.close()


@pytest.fixture(scope="session")
def kafka():
    return MockKafka()


def ingest_topic(kafka, topic, group, expected_messages, timeout=60, **ingestor_options):
    """Consume ``topic`` in this process until ``expected_messages`` were processed; returns the Ingestor."""
    from data_app.ingest.ingestor import Ingestor
    from data_app.ingest.runner import KafkaIngest

    ingestor = Ingestor(**ingestor_options)
    # Static assignment: joining a group on the mock cluster waits 3 s (the command tests subscribe).
    source = KafkaIngest(
        ingestor,
        kafka.bootstrap,
        topic,
        group,
        from_beginning=True,
        flush_seconds=0.2,
        options={"log_level": 3},
        partitions=[0, 1],
    )
    deadline = time.monotonic() + timeout
    source.run(stop=lambda: ingestor.stats.messages >= expected_messages or time.monotonic() > deadline)
    assert ingestor.stats.messages == expected_messages, "the topic was not consumed in time"
    return ingestor


# --- reading back through REST ---------------------------------------------------------------------


def read_data(api, identity):
    """``({channel: [(time, value), ...]}, [(time, definition id, app, status, values), ...])`` via REST."""
    from data_app.ingest.dedupe import item_times

    response = api.get(f"/rta/v2/sessions/{identity}/data/timestamped/0-")
    assert response.status_code == 200
    channels = {}
    for chunk in wire.read_chunks(b"".join(response.streaming_content)):
        for item in chunk.decode("timestamped").timestamped_data:
            values = struct.unpack(f"<{len(item.buffer) // 8}d", item.buffer)
            channels.setdefault(item.channel_id, []).extend(zip(item_times(item).tolist(), values))
    response = api.get(f"/rta/v2/sessions/{identity}/data/events")
    assert response.status_code == 200
    events = []
    for chunk in wire.read_chunks(b"".join(response.streaming_content)):
        for e in chunk.decode("events").events:
            events.append((e.timestamp, e.event_definition_id, e.app_name, e.status_text, list(e.raw_data)))
    return {c: sorted(v) for c, v in channels.items()}, sorted(events)


def session_json(api, identity):
    response = api.get(f"/rta/v2/sessions/{identity}")
    assert response.status_code == 200, response.content
    return response.json()


def assert_session_complete(api, stream):
    """The session of ``stream`` is closed, bound, has its laps, and reads back every sample exactly once."""
    from data_app.ingest.configs import event_definition_id

    session = session_json(api, stream.session_id)
    assert session["state"] == "closed"
    assert session["identifier"] == f"run {stream.stream_id}"
    assert session["type"] == "StreamSession" and session["quality"] == 0.9
    assert session["group"] == "tests" and session["version"] == "3"
    assert session["details"]["Driver"] == "Test"
    assert session["configBindings"] == [
        {"identifier": f"advanced-streams/v1/{FORMAT_A_ID}/{ATLAS_ID}", "channelOffset": 0},
        {"identifier": f"advanced-streams/v1/{FORMAT_B_ID}/{ATLAS_ID}", "channelOffset": 6},
    ]
    laps = [m for m in session["markers"] if m["category"] == "Laps"]
    starts = [(t, n, kind) for t, n, kind, trigger in stream.laps if trigger != 4]
    assert [(m["startTime"], m["details"]["number"], m["type"]) for m in laps] == starts
    # Each lap spans to the next trigger; the last ends at the telemetry-end trigger.
    assert [m["endTime"] for m in laps] == [t for t, *_ in stream.laps[1:]]
    channels, events = read_data(api, stream.session_id)
    assert channels == {c: v for c, v in stream.expected.items() if v}
    assert events == [(t, event_definition_id(i), "TAG320BIOS", s, v) for t, i, s, v in stream.expected_events]
    return session
