"""Advanced Streams ingest from Kafka: samples per second for JSON and protobuf ``tsamples``, and lag.

Runs against the bench database (``rta_bench``) with data files in a temporary
directory. The broker is librdkafka's mock cluster in this process (a real
Kafka-protocol broker on loopback); the ingest is the same ``KafkaIngest`` +
``Ingestor`` that ``manage.py ingest_streams`` runs, on one thread.

1. Throughput: ``--sessions`` open sessions (one stream each, over 4
   partitions) send ``tsamples`` messages of ``--parameters`` parameters x
   ``--per-message`` samples, built before the clock starts and produced a few
   MB ahead of the consumer (the mock cluster keeps only the last few MB of a
   partition). Timed from the
   first poll to the end of the final flush (data fsynced and indexed, offsets
   committed); the stored sample count is checked. Also measured: the same
   workload fed to the ``Ingestor`` from memory (its own rate, without the
   in-process broker competing for the CPU; wall and process CPU time), the
   messages consumed from Kafka and decoded only, and a baseline ingest written
   the obvious way (stdlib ``json``, a Python loop over the samples building
   items) from memory into the same store, on fewer samples.
2. Lag: a producer thread sends protobuf ``tsamples`` at ``--lag-rate``
   samples/s for ``--lag-seconds`` while the ingest runs with a 0.5 s flush
   interval; lag = Kafka message timestamp -> the flush that made it durable.

Usage: python -m bench ingest [--json-samples N] [--protobuf-samples N] [--sessions N] [--parameters N]
                              [--per-message N] [--lag-rate N] [--lag-seconds S]
"""

import argparse
import json as stdlib_json
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime

from bench import common

NAME = "ingest"
TARGETS = {"json": 1_000_000, "protobuf": 5_000_000}
EPOCH = 1_700_000_000_000_000_000
MS = 1_000_000
PARTITIONS = 4  # the mock cluster's topics have 4; each keeps only its last ~5 MB


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--json-samples", type=int, default=4_000_000)
    parser.add_argument("--protobuf-samples", type=int, default=8_000_000)
    parser.add_argument("--baseline-samples", type=int, default=400_000)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--parameters", type=int, default=20)
    parser.add_argument("--per-message", type=int, default=500, help="samples per parameter per message")
    parser.add_argument("--lag-rate", type=int, default=500_000, help="samples/s produced during the lag run")
    parser.add_argument("--lag-seconds", type=float, default=8.0)
    args, _unknown = parser.parse_known_args(argv)
    return args


# --- workload ------------------------------------------------------------------------------------


class Workload:
    """Sessions and their tsamples messages (JSON or protobuf codec)."""

    def __init__(self, args, format_id, atlas_id):
        import numpy as np

        self.np = np
        self.args = args
        self.format_id = format_id
        self.atlas_id = atlas_id
        self.rng = np.random.default_rng(7)
        self.values = self.rng.normal(size=(args.parameters, args.per_message)) * 100
        self.offsets = np.arange(args.per_message, dtype=np.int64) * MS  # 1 kHz

    def session(self, stream, session_id):
        import orjson

        return f"session:{stream}".encode(), orjson.dumps(
            {
                "id": session_id,
                "state": "open",
                "identifier": f"bench {stream}",
                "dependencies": {"dataFormat": [self.format_id], "atlasConfiguration": [self.atlas_id]},
                "activity": {"start": "2023-11-14T22:13:20Z", "durationNanos": 0},
            }
        )

    def tsamples(self, stream, index, codec):
        import orjson
        from advanced_streams import codec_pb2

        times = (self.offsets + index * self.args.per_message * MS).tolist()
        key = f"tsamples:{stream}".encode()
        if codec == "json":
            return key, orjson.dumps(
                {
                    "feed": "",
                    "format": self.format_id,
                    "data": {
                        f"p{i}:Bench": {"values": self.values[i].tolist(), "epoch": EPOCH, "time": times}
                        for i in range(self.args.parameters)
                    },
                }
            )
        message = codec_pb2.ParameterSamplesMessage(dataFormatId=self.format_id, feed="")
        for i in range(self.args.parameters):
            entry = message.parameters[i]
            entry.epoch_nanos = EPOCH
            entry.timestamps_nanos.extend(times)
            entry.values.extend(self.values[i].tolist())
        return key, message.SerializeToString()

    def messages(self, codec, samples):
        """``(partition, key, value)`` for every session, interleaved; and the session ids."""
        per_message = self.args.parameters * self.args.per_message
        rounds = max(1, samples // (per_message * self.args.sessions))
        streams = [(f"bench-{codec}-{n}-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())) for n in range(self.args.sessions)]
        out = []
        for n, (stream, session_id) in enumerate(streams):
            out += [
                (n % PARTITIONS, f"$start:{stream}".encode(), b""),
                (n % PARTITIONS, *self.session(stream, session_id)),
            ]
        for index in range(rounds):
            for n, (stream, _) in enumerate(streams):
                out.append((n % PARTITIONS, *self.tsamples(stream, index, codec)))
        return out, [s for _, s in streams], rounds * per_message * self.args.sessions


# --- runs ----------------------------------------------------------------------------------------


def _produce(producer, topic, messages):
    for partition, key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


class StreamingProducer(threading.Thread):
    """Produces pre-built messages while they are consumed, staying ``window_bytes`` ahead per partition.

    The mock cluster keeps only the last few MB of each partition, so a whole run cannot be produced
    up front; messages are built before the clock starts, so producing costs little CPU.
    """

    def __init__(self, producer, topic, messages, consumed, window_bytes=3_000_000):
        super().__init__(name="bench-producer", daemon=True)
        self.producer, self.topic, self.messages = producer, topic, messages
        self.consumed = consumed  # partition -> next offset the consumer will read
        self.window_bytes = window_bytes
        self.failed = None

    def run(self):
        try:
            sizes = {}  # partition -> [(offset, size)] produced
            for partition, key, value in self.messages:
                produced = sizes.setdefault(partition, [])
                while True:
                    position = self.consumed(partition)
                    ahead = sum(size for offset, size in produced[-64:] if offset >= position)
                    if ahead + len(value) <= self.window_bytes or not any(o >= position for o, _ in produced[-64:]):
                        break
                    self.producer.poll(0.001)
                self.producer.produce(self.topic, key=key, value=value, partition=partition)
                self.producer.poll(0)
                produced.append((len(produced), len(value)))
            self.producer.flush(60)
        except Exception as exc:  # reported by the run
            self.failed = exc


def _stored_samples(identities):
    from django.db.models import Sum

    from data_app.models import Chunk

    return Chunk.objects.filter(identity__in=identities).aggregate(n=Sum("sample_count"))["n"] or 0


_FAST_FETCH = {"log_level": 3, "fetch.wait.max.ms": 5, "fetch.min.bytes": 1}


def run_ingest(bootstrap, producer, topic, messages, flush_seconds=2.0):
    from data_app.ingest.ingestor import Ingestor
    from data_app.ingest.runner import KafkaIngest

    ingestor = Ingestor()
    source = KafkaIngest(
        ingestor,
        bootstrap,
        topic,
        f"bench-{topic}",
        from_beginning=True,
        flush_seconds=flush_seconds,
        options=_FAST_FETCH,
        partitions=list(range(PARTITIONS)),
    )
    feeder = StreamingProducer(producer, topic, messages, lambda p: ingestor.positions.get(p, 0))
    cpu = time.process_time()
    feeder.start()
    started = time.perf_counter()
    source.run(stop=lambda: ingestor.stats.messages >= len(messages) or feeder.failed is not None)
    seconds = time.perf_counter() - started
    feeder.join()
    if feeder.failed is not None:
        raise feeder.failed
    return ingestor, source, seconds, time.process_time() - cpu


def run_core(messages, flush_seconds=2.0):
    """The same Ingestor fed from memory (no broker): the ingest's own rate, flushes and live tap included."""
    from data_app.ingest.ingestor import Ingestor
    from data_app.ingest.runner import Flusher

    ingestor = Ingestor()
    flusher = Flusher(ingestor, flush_seconds, lambda offsets, mark: None)  # the runners' flush rule
    cpu, started = time.process_time(), time.perf_counter()  # all threads: flushes run beside
    for offset, (partition, key, value) in enumerate(messages):
        ingestor.process(key, value, partition, offset)
        if offset % 64 == 0:
            flusher.maybe()
    flusher.maybe(force=True)
    return ingestor, time.perf_counter() - started, time.process_time() - cpu


def run_decode_only(bootstrap, producer, topic, messages):
    """Consume and decode the messages, storing nothing: what the store's share of the time is measured against."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from data_app.ingest import messages as m

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"decode-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            **_FAST_FETCH,
        }
    )
    positions = {}
    feeder = StreamingProducer(producer, topic, messages, lambda p: positions.get(p, 0))
    seen = samples = 0
    feeder.start()
    started = time.perf_counter()
    consumer.list_topics(topic, timeout=10)  # leaders known first, as KafkaIngest does: no first-fetch wait
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    while seen < len(messages) and feeder.failed is None:
        batch = consumer.consume(2000, 0) or [m for m in [consumer.poll(0.2)] if m is not None]
        for message in batch:
            seen += 1
            positions[message.partition()] = message.offset() + 1
            kind, _ = m.split_key(message.key())
            if kind == m.TSAMPLES:
                samples += m.parse_data(kind, message.value()).sample_count()
    seconds = time.perf_counter() - started
    feeder.join()
    consumer.close()
    if feeder.failed is not None:
        raise feeder.failed
    return samples, seconds


def run_baseline(messages, format_document):
    """The obvious ingest: stdlib json, Python loops over samples, 128-sample items, same DataSink."""
    from rta.model import data_pb2

    from data_app.services.sink import DataSink

    channel_of = {p: i for i, p in enumerate(format_document["feeds"][""]["parameters"])}
    sinks, samples = {}, 0
    started = time.perf_counter()
    session_of = {}
    for _, key, value in messages:
        kind, stream = key.decode().split(":", 1)
        if kind == "session":
            session_of[stream] = stdlib_json.loads(value)["id"]
            sinks[stream] = DataSink(session_of[stream])
        elif kind == "tsamples":
            document = stdlib_json.loads(value)
            for identifier, entry in document["data"].items():
                times = [entry["epoch"] + t for t in entry["time"]]
                values = entry["values"]
                for start in range(0, len(times), 128):
                    chunk = times[start : start + 128]
                    deltas = [0] + [b - a for a, b in zip(chunk, chunk[1:])]
                    sinks[stream].add(
                        "timestamped",
                        data_pb2.TimestampedData(
                            channel_id=channel_of[identifier],
                            start_timestamp=chunk[0],
                            timestamp_deltas=deltas,
                            buffer=struct.pack(f"<{len(chunk)}d", *values[start : start + 128]),
                        ),
                    )
                samples += len(times)
    for sink in sinks.values():
        sink.flush()
    return samples, time.perf_counter() - started, list(session_of.values())


def run_lag(bootstrap, workload, rate, seconds):
    """Produce protobuf tsamples at ``rate`` samples/s while ingesting; lag percentiles in ms."""
    from confluent_kafka import Producer

    topic = f"bench-lag-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3})
    stream, session_id = f"lag-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    _produce(producer, topic, [(0, f"$start:{stream}".encode(), b""), (0, *workload.session(stream, session_id))])
    per_message = workload.args.parameters * workload.args.per_message
    interval = per_message / rate
    total = max(1, int(seconds / interval))
    done = threading.Event()

    def produce():
        # The mock cluster keeps only a partition's last few MB: start the paced stream once the
        # consumer has joined and read the session, or a slow start would lose its first messages.
        while ingestor.stats.messages < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        for index in range(total):
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            key, value = workload.tsamples(stream, index, "protobuf")
            producer.produce(topic, key=key, value=value, partition=0)
            producer.poll(0)
        producer.flush(30)
        done.set()

    from data_app.ingest.ingestor import Ingestor
    from data_app.ingest.runner import KafkaIngest

    ingestor = Ingestor()
    source = KafkaIngest(
        ingestor, bootstrap, topic, "lag", from_beginning=True, flush_seconds=0.5, options=_FAST_FETCH, partitions=[0]
    )
    deadline = time.monotonic() + seconds + 60
    thread = threading.Thread(target=produce, name="bench-producer")
    thread.start()
    source.run(stop=lambda: (done.is_set() and ingestor.stats.messages >= total + 2) or time.monotonic() > deadline)
    thread.join()
    if ingestor.stats.messages < total + 2:
        raise RuntimeError(
            f"the lag run consumed {ingestor.stats.messages} of {total + 2} messages (the ingest fell too far behind)"
        )
    lags = source.lag.samples
    return {
        "rate_samples_per_second": rate,
        "seconds": seconds,
        "messages": total,
        "flush_seconds": 0.5,
        "lag_ms": {
            "p50": round(common.percentile(lags, 50), 1),
            "p95": round(common.percentile(lags, 95), 1),
            "max": round(max(lags), 1) if lags else None,
        },
    }


# --- main ----------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    data_path = tempfile.mkdtemp(prefix="rta-bench-ingest-")
    os.environ["RTA_DATA_PATH"] = data_path  # before settings are read: bench data never lands in ./var
    try:
        return _main(args, data_path)
    finally:
        shutil.rmtree(data_path, ignore_errors=True)


def _main(args, data_path):
    url = common.setup_bench_django()
    from confluent_kafka import Producer
    from django.db import connections

    from config_app.services import dependencies
    from sessions_app.models import Session

    load_before = common.warn_if_busy("before the ingest benchmark")
    parameters = [f"p{i}:Bench" for i in range(args.parameters)]
    format_document = {"feeds": {"": {"frequency": 1000.0, "parameters": parameters}}}
    format_id, _ = dependencies.publish(dependencies.DATA_FORMAT, format_document)
    atlas_id, _ = dependencies.publish(
        dependencies.ATLAS_CONFIGURATION,
        {
            "appGroups": {
                "Bench": {
                    "groups": {"All": {"parameters": {p: {"name": p.split(":")[0], "units": "u"} for p in parameters}}}
                }
            }
        },
    )
    workload = Workload(args, format_id, atlas_id)

    cluster = Producer({"test.mock.num.brokers": 1, "log_level": 2})
    broker = next(iter(cluster.list_topics(timeout=10).brokers.values()))
    bootstrap = f"{broker.host}:{broker.port}"
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, "message.max.bytes": 16 * 1024 * 1024, "log_level": 2}
    )

    results, created = {}, []
    try:
        for codec, samples in (("json", args.json_samples), ("protobuf", args.protobuf_samples)):
            messages, sessions, expected = workload.messages(codec, samples)
            created += sessions
            payload = sum(len(v) for _, _, v in messages)
            decoded, decode_seconds = run_decode_only(bootstrap, producer, f"bench-{uuid.uuid4().hex[:8]}", messages)
            assert decoded == expected, (decoded, expected)
            ingestor, source, seconds, cpu = run_ingest(bootstrap, producer, f"bench-{uuid.uuid4().hex[:8]}", messages)
            stored = _stored_samples(sessions)
            assert ingestor.stats.samples == expected and stored == expected, (ingestor.stats.samples, stored, expected)
            rate = expected / seconds
            # The same workload for new sessions, from memory.
            core_messages, core_sessions, _ = workload.messages(codec, samples)
            created += core_sessions
            core, core_seconds, core_cpu = run_core(core_messages)
            assert core.stats.samples == expected and _stored_samples(core_sessions) == expected
            results[codec] = {
                "samples": expected,
                "messages": len(messages),
                "payload_mb": round(payload / 1e6, 1),
                "bytes_per_sample": round(payload / expected, 2),
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "samples_per_second": round(rate),
                "decode_only_samples_per_second": round(decoded / decode_seconds),
                "from_memory_samples_per_second": round(expected / core_seconds),
                "from_memory_samples_per_cpu_second": round(expected / core_cpu),
                "target_samples_per_second": TARGETS[codec],
                "meets_target": rate >= TARGETS[codec],
            }
            common.console.print(
                f"{codec:8s}: {rate:12,.0f} samples/s from Kafka ({expected:,} samples, {seconds:.2f} s, process CPU "
                f"{cpu:.2f} s); from memory {expected / core_seconds:12,.0f}/s ({expected / core_cpu:,.0f} per "
                f"CPU s); decode only {decoded / decode_seconds:12,.0f}/s"
            )
        baseline_messages, baseline_sessions, _ = workload.messages("json", args.baseline_samples)
        created += baseline_sessions
        base_samples, base_seconds, _ = run_baseline(baseline_messages, format_document)
        results["baseline_json"] = {
            "samples": base_samples,
            "seconds": round(base_seconds, 3),
            "samples_per_second": round(base_samples / base_seconds),
        }
        common.console.print(f"baseline: {base_samples / base_seconds:12,.0f} samples/s (stdlib json, Python loops)")
        lag = run_lag(bootstrap, workload, args.lag_rate, args.lag_seconds)
        results["lag"] = lag
        common.console.print(
            f"lag at {args.lag_rate:,} samples/s: p50 {lag['lag_ms']['p50']} ms, "
            f"p95 {lag['lag_ms']['p95']} ms, max {lag['lag_ms']['max']} ms"
        )
    finally:
        Session.objects.filter(identity__in=created).delete()
        from data_app.models import Chunk

        Chunk.objects.filter(identity__in=created).delete()
        connections.close_all()

    base = results["baseline_json"]["samples_per_second"]
    common.print_table(
        f"Advanced Streams ingest from Kafka (tsamples, {args.sessions} sessions, {args.parameters} parameters x "
        f"{args.per_message} samples per message, one process)",
        [
            "codec",
            "from Kafka/s",
            "from memory/s",
            "per CPU-s",
            "Kafka decode only/s",
            "bytes/sample",
            "vs baseline",
            "target",
            "met",
        ],
        [
            [
                codec,
                f"{r['samples_per_second']:,}",
                f"{r['from_memory_samples_per_second']:,}",
                f"{r['from_memory_samples_per_cpu_second']:,}",
                f"{r['decode_only_samples_per_second']:,}",
                r["bytes_per_sample"],
                f"{r['from_memory_samples_per_second'] / base:.1f}x",
                f"≥ {r['target_samples_per_second']:,}",
                "yes" if r["meets_target"] else "[red]NO[/red]",
            ]
            for codec, r in results.items()
            if codec in TARGETS
        ]
        + [["baseline (json)", "", f"{base:,}", "", "", "", "1.0x", "", ""]],
        caption="From Kafka: first poll to the final flush (fsynced, indexed, offsets committed) with the mock "
        "broker and its feeder in this process. From memory: the same Ingestor without a broker. Live buffer "
        "publishing included in both. The baseline (stdlib json, Python loops) reads from memory.",
    )
    data = {
        "benchmark": NAME,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": common.redact(url),
        "environment": {**common.environment(), "load_before": load_before, "load_after": common.machine_load()},
        "method": {
            "sessions": args.sessions,
            "parameters": args.parameters,
            "samples_per_message_per_parameter": args.per_message,
            "broker": "librdkafka mock cluster in process",
            "flush_seconds": 2.0,
        },
        "results": results,
    }
    path = common.write_results(NAME, data)
    common.console.print(f"results written to {path.relative_to(common.PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
