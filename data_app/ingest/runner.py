"""Sources driving an ``Ingestor``: a Kafka topic (confluent-kafka) and recorded stream files.

Both feed the same ``Ingestor.process`` in order and flush on the same rule:
every ``flush_seconds``, when the buffered data reaches the ingestor's byte
budget, and when they stop. A flush runs in the background while messages go
on being processed (encoding, compression, fsync and indexing overlap with
decoding the next messages); the offsets it covers are committed once it has
finished (data fsynced and indexed), so a crash or kill at any point loses
nothing: the uncommitted messages are read again and the duplicates they carry
are dropped by ``dedupe``.

A recorded stream file holds one message per line: the key, a tab, the
value. Values are the JSON text as it was on the topic; binary values (the
protobuf codec) are written ``base64:`` followed by their base64 encoding. A
line without a tab is a key with an empty value (``$start:s1``). The line
number (from 0) stands in for the Kafka offset.
"""

import base64
import logging
import time
from dataclasses import dataclass, field

from data_app.metrics import INGEST_COMMITTED_OFFSET, INGEST_CONSUMER_LAG, INGEST_LAG

log = logging.getLogger(__name__)

BASE64_PREFIX = b"base64:"


@dataclass
class Lag:
    """End-to-end lag: Kafka message timestamp -> the flush that made it durable (milliseconds)."""

    samples: list = field(default_factory=list)
    limit: int = 200_000
    _pending: list = field(default_factory=list)

    def seen(self, timestamp_ms):
        if len(self._pending) < 10_000:
            self._pending.append(timestamp_ms)

    def mark(self):
        """Where a flush starting now ends (for ``flushed``)."""
        return len(self._pending)

    def flushed(self, upto=None):
        """The messages seen before ``mark()`` returned ``upto`` (default: all) are durable now."""
        upto = len(self._pending) if upto is None else upto
        now = time.time() * 1000
        for t in self._pending[:upto]:
            INGEST_LAG.observe(max(0.0, now - t) / 1000)
        if len(self.samples) < self.limit:
            self.samples.extend(now - t for t in self._pending[:upto])
        del self._pending[:upto]


class Flusher:
    """Flushes on the rule, one flush in the background at a time.

    ``on_flushed(offsets, lag_mark)`` is called once a flush is durable, with the
    offsets it made safe to commit and the lag mark taken when it began.
    """

    def __init__(self, ingestor, flush_seconds, on_flushed, lag=None):
        self.ingestor = ingestor
        self.flush_seconds = flush_seconds
        self.on_flushed = on_flushed
        self.lag = lag or Lag()
        self.last = time.monotonic()
        self._pending = None  # (ticket, lag mark) of the flush under way

    def maybe(self, force=False):
        if self._pending is not None and self.ingestor.flush_finished(self._pending[0]):
            self.settle()
        if force:
            self.settle()
            mark = self.lag.mark()
            self.ingestor.flush()
            self.last = time.monotonic()
            self.on_flushed(self.ingestor.commit_offsets(), mark)
        elif self.ingestor.wants_flush() or time.monotonic() - self.last >= self.flush_seconds:
            self.settle()
            self._pending = (self.ingestor.start_flush(), self.lag.mark())
            self.last = time.monotonic()

    def settle(self):
        """Wait for the flush under way, if any, and report it."""
        if self._pending is not None:
            (ticket, mark), self._pending = self._pending, None
            self.on_flushed(self.ingestor.finish_flush(ticket), mark)


# --- recorded files -----------------------------------------------------------------------------


def encode_line(key, value):
    """One recorded-file line (bytes, with its newline) for a message."""
    key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    value = b"" if value is None else (value.encode("utf-8") if isinstance(value, str) else bytes(value))
    if any(c in value for c in b"\t\r\n") or value.startswith(BASE64_PREFIX) or not _is_utf8(value):
        value = BASE64_PREFIX + base64.b64encode(value)
    return key + (b"\t" + value if value else b"") + b"\n"


def _is_utf8(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_line(line):
    """``(key, value)`` of a recorded-file line."""
    line = line.rstrip(b"\r\n")
    key, _, value = line.partition(b"\t")
    if value.startswith(BASE64_PREFIX):
        try:
            value = base64.b64decode(value[len(BASE64_PREFIX) :], validate=True)
        except ValueError:
            value = None  # undecodable: the ingestor counts the message as malformed
    return key, value


def replay_file(ingestor, path, flush_seconds=2.0, stop=lambda: False, progress=None):
    """Feed a recorded stream file through ``ingestor``; returns the number of lines read."""
    flusher = Flusher(ingestor, flush_seconds, lambda offsets, mark: None)
    lines = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle):
            if stop():
                break
            lines += 1
            if line.strip():
                key, value = decode_line(line)
                ingestor.process(key, value, 0, number)
            if lines % 256 == 0:
                flusher.maybe()
                if progress is not None:
                    progress(handle.tell())
        flusher.maybe(force=True)
        if progress is not None:
            progress(handle.tell())
    return lines


# --- Kafka ----------------------------------------------------------------------------------------


def consumer_config(bootstrap, group, from_beginning, options=None):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Like kafka-console-consumer: committed offsets win; without them, start at the beginning or the end.
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.partition.eof": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
    }
    config.update(options or {})
    return config


class KafkaIngest:
    """Consumes one topic into an ``Ingestor`` until ``stop()`` is true (then flushes and commits)."""

    def __init__(
        self,
        ingestor,
        bootstrap,
        topic,
        group,
        from_beginning=False,
        flush_seconds=2.0,
        options=None,
        batch=2000,
        poll_seconds=0.2,
        partitions=None,
    ):
        from confluent_kafka import Consumer

        self.ingestor = ingestor
        self.topic = topic
        self.flush_seconds = flush_seconds
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.lag = Lag()
        self.errors = 0
        self.commit_failures = 0
        self.consumer = Consumer(consumer_config(bootstrap, group, from_beginning, options))
        self.from_beginning = from_beginning
        self.partitions = partitions
        self._committed = {}
        self._flusher = None  # the running loop's Flusher (a revoke settles its flush under way)
        self._assigned_at = None

    def run(self, stop=lambda: False, progress=None, idle_stop=None):
        """Consume until ``stop()``; ``idle_stop`` (seconds) also stops after that long without messages."""
        from confluent_kafka import KafkaError, KafkaException

        consumer, ingestor, lag = self.consumer, self.ingestor, self.lag
        flusher = self._flusher = Flusher(ingestor, self.flush_seconds, self._commit, lag)
        if self.partitions is None:
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        else:
            self._assign_statically()
        last_progress = last_message = 0.0
        try:
            while not stop():
                batch = self._next_batch()
                for message in batch:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        if error.fatal():
                            raise KafkaException(error)
                        self.errors += 1
                        log.warning("Kafka: %s", error)
                        continue
                    ingestor.process(message.key(), message.value(), message.partition(), message.offset())
                    kind, timestamp = message.timestamp()
                    if kind:
                        lag.seen(timestamp)
                now = time.monotonic()
                if batch:
                    last_message = now
                flusher.maybe()
                if progress is not None and now - last_progress >= 0.25:
                    progress()
                    last_progress = now
                # Idle time counts from the assignment: joining a group can wait for a dead member to time out.
                if idle_stop is not None and self._assigned_at is not None:
                    if now - max(last_message, self._assigned_at) >= idle_stop:
                        break
            flusher.maybe(force=True)
        finally:
            consumer.close()  # leaves the group at once, so a restart gets the partitions back quickly

    def _next_batch(self):
        """What the client has queued (no waiting), else the first message to arrive within the poll time.

        ``consume(n, timeout)`` waits until it has ``n`` messages or the timeout passes, which
        would hold every batch of a light stream back by the whole timeout.
        """
        batch = self.consumer.consume(self.batch, 0)
        if batch:
            return batch
        message = self.consumer.poll(self.poll_seconds)
        return [message] if message is not None else []

    def _commit(self, durable, lag_mark=None):
        """Commit the offsets ``durable`` a flush made safe (only those that moved)."""
        from confluent_kafka import TopicPartition

        self.lag.flushed(lag_mark)
        offsets = [
            TopicPartition(self.topic, partition, offset)
            for partition, offset in durable.items()
            if self._committed.get(partition) != offset
        ]
        if offsets:
            from confluent_kafka import KafkaException

            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # E.g. the partitions moved to another member: the data is durable, and whoever reads
                # these messages again drops them as duplicates. Retried at the next flush.
                self.commit_failures += 1
                log.warning("Kafka offset commit failed (retried at the next flush): %s", exc.args[0])
                return
            for tp in offsets:
                self._committed[tp.partition] = tp.offset
                self._report_offset(tp)

    def _report_offset(self, tp):
        labels = (self.topic, str(tp.partition))
        INGEST_COMMITTED_OFFSET.labels(*labels).set(tp.offset)
        _low, high = self.consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)  # no broker round trip
        if high >= 0:
            INGEST_CONSUMER_LAG.labels(*labels).set(max(0, high - tp.offset))

    def _assign_statically(self):
        """Read the given partitions without joining the group's rebalancing (offsets still go to the group)."""
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

        wanted = [TopicPartition(self.topic, p) for p in self.partitions]
        start = OFFSET_BEGINNING if self.from_beginning else OFFSET_END
        # Partitions assigned before the client knows their leaders wait for a retry timer
        # (half a second) before their first fetch; the topic's metadata first avoids that.
        self.consumer.list_topics(self.topic, timeout=30)
        committed = self.consumer.committed(wanted, timeout=30)
        self.consumer.assign(
            [TopicPartition(self.topic, tp.partition, tp.offset if tp.offset >= 0 else start) for tp in committed]
        )
        self._assigned_at = time.monotonic()

    def _on_assign(self, consumer, partitions):
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer, partitions):
        # Everything read from these partitions must be durable and committed before another consumer takes them.
        if self._flusher is not None:
            self._flusher.settle()
        self.ingestor.flush()
        self._commit(self.ingestor.commit_offsets())
        self.ingestor.forget_partitions([p.partition for p in partitions])
        for p in partitions:
            self._committed.pop(p.partition, None)
