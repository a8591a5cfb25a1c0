"""The Advanced Streams mapping: one ``Ingestor`` turns messages into sessions, configs and data.

It is transport-agnostic: the Kafka consumer and the file replay both call
``process(key, value, partition, offset)`` in order, ``flush()`` at their
flush points and commit ``commit_offsets()`` afterwards.

Per stream id (spec §11; all messages of a stream share a partition):

- ``$start`` opens the stream; ``$end`` flushes its data, closes its session
  (unless the session already says it is in a closed state) and ends its last
  lap at the session's end; later messages of the stream are ignored until
  the next ``$start``. A stream first seen without ``$start`` is *partial*
  (the consumer joined it live, or started mid-topic): it is recorded from
  its next ``session`` message, which the spec repeats for exactly that
  purpose; data before it cannot be placed and is skipped (counted).
- ``session`` creates or updates the RTA session through
  ``create_or_update_session`` with the message's offset as ``sequence``, so
  a replay never rolls metadata back (``id`` -> identity; ``state``;
  ``identifier``; ``details`` merged; ``type`` default ``StreamSession``;
  ``quality`` default 0.9; ``model.group``/``version``; ``activity.start`` ->
  timestamp; start + ``durationNanos`` widens the time range; heartbeat). Its
  ``dataFormat`` and ``atlasConfiguration`` dependencies are fetched from
  the dependency store; the generated config of each (data format, ATLAS
  configurations) pair is published once and bound, channel offsets
  stacking the formats in declared order. Both kinds of dependency are needed
  to record data (as the spec says); until they resolve (retried every
  ``retry_seconds``), data is skipped and counted. A later ``session`` message
  declaring neither kind (a heartbeat, the closing message) keeps those the
  stream's session declared before.
- ``tsamples`` / ``tdata`` / ``events`` are written through the session's
  ``DataSink`` (which also publishes live sessions to the live buffer) as
  ``timestamped`` data and events; ``lap`` upserts ``Laps`` markers, each
  spanning from its trigger to the next; ``sync`` flushes the stream's data;
  a session state that is closed flushes it too. Unknown types are ignored.
- A message that cannot be used (bad key, bad JSON or protobuf, wrong types,
  unknown format, feed or parameter, a value the session service rejects) is
  logged, counted and skipped, having changed nothing: it is checked whole
  before anything of it is applied.

Data replays are made idempotent by ``dedupe`` (a sample is stored once per
channel and timestamp); session updates by their sequence.
"""

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np
from rta.model import data_pb2

from config_app.services import dependencies
from data_app.ingest import configs, formats
from data_app.ingest import messages as m
from data_app.ingest.dedupe import Watermarks, new_mask
from data_app.services.sink import DataSink
from rta_core.errors import ServiceError
from rta_core.timeutil import parse_timestamp
from rta_kit.timestamped import TimestampedRun
from sessions_app.models import Marker, Session, SessionState
from sessions_app.services.updates import close_ops, create_or_update_session
from sessions_app.services.values import LAPS_CATEGORY, STATE_BY_NAME

log = logging.getLogger(__name__)

DEFAULT_TYPE = "StreamSession"
DEFAULT_QUALITY = 0.9
TELEMETRY_END = 4  # lap trigger source: ends the last lap, starts none
MAX_LOGGED_PROBLEMS = 200
ENDED_MEMORY = 100_000


@dataclass
class Binding:
    """What a session's dependencies resolve to (shared by sessions declaring the same ones)."""

    key: tuple = ()  # (data format ids, ATLAS configuration ids)
    formats: dict = field(default_factory=dict)  # format id -> (FormatLayout, channel offset)
    config_bindings: list = field(default_factory=list)
    problem: str | None = None  # why data cannot be recorded, when it cannot
    retry_at: float = 0.0


class SessionData:
    """One session identity's sink, watermarks and whether it has unflushed data.

    Every flush that stores something is counted in ``stats.flushes``, whatever asked for it
    (the flush rule, ``sync``, a closed state, ``$end``, a replay check).
    """

    def __init__(self, identity, stats):
        self.identity = identity
        self.stats = stats
        self.sink = DataSink(identity)
        self.marks = Watermarks(identity)
        self.dirty = False
        self.touched = set()

    def flush(self):
        if not self.dirty:
            self.sink.wait()  # what an earlier start_flush began must be durable too
            return False
        self.sink.flush()
        self._flushed()
        return True

    def start_flush(self):
        """``flush`` in the background (``sink.wait()`` for it)."""
        if not self.dirty:
            return False
        self.sink.start_flush()
        # Stored timestamps are read again when needed, after a synchronous flush, which
        # waits for this one: forgetting them now is enough.
        self._flushed()
        return True

    def _flushed(self):
        self.stats.flushes += 1
        for kind, channel in self.touched:
            self.marks.forget(kind, channel)
        self.touched.clear()
        self.dirty = False


@dataclass
class Stream:
    partition: int
    started: bool
    identity: str | None = None
    binding: Binding | None = None
    session_offset: int | None = None  # offset of the last session message: where a restart must resume
    last_lap: dict | None = None
    last_seen: float = 0.0
    reported_problem: str | None = None  # the reason logged for not recording the session's data


class Stats:
    """Counters for progress and the final summary."""

    def __init__(self):
        self.started = time.monotonic()
        self.messages = 0
        self.bytes = 0
        self.by_type = Counter()
        self.malformed = Counter()
        self.skipped = Counter()
        self.samples = 0
        self.duplicates = 0
        self.events = 0
        self.laps = 0
        self.sessions = set()
        self.closed = 0
        self.partial_streams = 0
        self.flushes = 0

    @property
    def elapsed(self):
        return time.monotonic() - self.started

    def as_dict(self):
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "by_type": dict(self.by_type),
            "malformed": dict(self.malformed),
            "skipped": dict(self.skipped),
            "samples": self.samples,
            "duplicate_samples": self.duplicates,
            "events": self.events,
            "laps": self.laps,
            "sessions": len(self.sessions),
            "sessions_closed": self.closed,
            "partial_streams": self.partial_streams,
            "flushes": self.flushes,
            "seconds": round(self.elapsed, 3),
        }


class Ingestor:
    def __init__(self, retry_seconds=5.0, idle_seconds=300.0, flush_bytes=256 * 1024 * 1024):
        self.retry_seconds = retry_seconds
        self.idle_seconds = idle_seconds
        self.flush_bytes = flush_bytes
        self.streams = {}
        self.ended = OrderedDict()  # stream ids whose $end was seen (bounded)
        self.sessions = {}  # identity -> SessionData
        self.bindings = {}  # (format ids, atlas ids) -> Binding
        self.documents = {}  # (type, id) -> document (dependencies never change)
        self.positions = {}  # partition -> next offset to read
        self.stats = Stats()
        self._logged = 0

    # --- entry points ----------------------------------------------------------------------------

    def process(self, key, value, partition=0, offset=0):
        """Apply one message; problems with the message itself are counted, never raised."""
        stats = self.stats
        stats.messages += 1
        stats.bytes += len(value) if value else 0
        try:
            message_type, stream_id = m.split_key(key)
            stats.by_type[message_type if message_type in m.KNOWN_TYPES else "other"] += 1
            handler = self._handlers.get(message_type)
            if handler is None:
                stats.skipped["unknown type"] += 1
            else:
                handler(self, stream_id, value, partition, offset)
        except m.MalformedMessage as exc:
            self._problem(exc.reason, exc.message, key, partition, offset)
        except ServiceError as exc:
            self._problem("rejected", exc.message, key, partition, offset)
        self.positions[partition] = offset + 1

    def flush(self):
        """Make everything processed so far durable; afterwards ``commit_offsets()`` may be committed.

        Streams silent for ``idle_seconds`` (a producer that died without ``$end``) are forgotten
        here, so memory does not grow with them; one that comes back is picked up again at its
        next ``session`` message, like any partial stream.
        """
        for data in self.sessions.values():
            data.flush()
        self._forget_idle_streams()

    def start_flush(self):
        """``flush()`` in the background, so messages go on being processed meanwhile.

        Returns a ticket for ``flush_finished``/``finish_flush``; the offsets
        ``finish_flush`` returns may be committed once it has returned.
        """
        pending = [data for data in self.sessions.values() if data.start_flush()]
        ticket = (pending, self.commit_offsets())
        self._forget_idle_streams()
        return ticket

    @staticmethod
    def flush_finished(ticket):
        return not any(data.sink.flushing for data in ticket[0])

    @staticmethod
    def finish_flush(ticket):
        """Wait for a flush ``start_flush`` began (raises its error); returns the offsets it made safe."""
        for data in ticket[0]:
            data.sink.wait()
        return ticket[1]

    def _forget_idle_streams(self):
        cutoff = time.monotonic() - self.idle_seconds
        idle = [stream_id for stream_id, stream in self.streams.items() if stream.last_seen < cutoff]
        if idle:
            for stream_id in idle:
                del self.streams[stream_id]
            self._drop_unused_sessions()

    @property
    def buffered_bytes(self):
        return sum(d.sink.buffered_bytes for d in self.sessions.values())

    def wants_flush(self):
        return self.buffered_bytes >= self.flush_bytes

    def commit_offsets(self):
        """``{partition: offset}`` safe to commit once ``flush()`` has returned.

        The position, held back to the last ``session`` message of every open stream
        of the partition: a restart must read that message again to know where the
        stream's data goes (data before it is then skipped as duplicate).
        """
        now = time.monotonic()
        out = dict(self.positions)
        for stream in self.streams.values():
            if stream.session_offset is None or now - stream.last_seen > self.idle_seconds:
                continue
            if stream.partition in out:
                out[stream.partition] = min(out[stream.partition], stream.session_offset)
        return out

    def forget_partitions(self, partitions):
        """Drop the state of streams in partitions this consumer no longer owns (flush first)."""
        partitions = set(partitions)
        for stream_id in [s for s, st in self.streams.items() if st.partition in partitions]:
            del self.streams[stream_id]
        for partition in partitions:
            self.positions.pop(partition, None)
        self._drop_unused_sessions()

    # --- stream lifecycle --------------------------------------------------------------------------

    def _stream(self, stream_id, partition):
        """The stream's state; None if it ended (messages after ``$end`` are ignored)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id in self.ended:
                self.stats.skipped["after $end"] += 1
                return None
            stream = self.streams[stream_id] = Stream(partition, started=False)
            self.stats.partial_streams += 1
        stream.last_seen = time.monotonic()
        return stream

    def _on_start(self, stream_id, value, partition, offset):
        old = self.streams.pop(stream_id, None)
        if old is not None and old.identity is not None:
            self._data(old.identity).flush()
        self.ended.pop(stream_id, None)
        self.streams[stream_id] = Stream(partition, started=True, last_seen=time.monotonic())

    def _on_end(self, stream_id, value, partition, offset):
        stream = self.streams.pop(stream_id, None)
        self.ended[stream_id] = True
        while len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)
        if stream is None or stream.identity is None:
            return
        self._finish(stream, offset, close=True)
        self.stats.closed += 1
        self._drop_unused_sessions()

    def _finish(self, stream, offset, close):
        """Flush the stream's data; close its session and end its last lap at the session's end."""
        self._data(stream.identity).flush()
        if Session.objects.filter(identity=stream.identity).exists():
            create_or_update_session(stream.identity, self._closing_ops(stream, close), sequence=offset)

    @staticmethod
    def _closing_ops(stream, close, activity_end=None):
        """Ops closing the session (``close``) and ending its open lap at the session's end."""
        row = Session.objects.filter(identity=stream.identity).values("state", "end_time").first() or {}
        ops = []
        if close and row:
            ops += close_ops(row["state"])
        ends = [e for e in (row.get("end_time"), activity_end) if e is not None]
        lap = stream.last_lap
        if lap is not None and ends and max(ends) > lap["start_time"]:
            ops.append(("update_markers", [{**lap, "end_time": max(ends)}]))
            stream.last_lap = None
        return ops

    def _drop_unused_sessions(self):
        used = {s.identity for s in self.streams.values()}
        for identity in [i for i in self.sessions if i not in used]:
            self.sessions.pop(identity).flush()

    def _data(self, identity):
        data = self.sessions.get(identity)
        if data is None:
            data = self.sessions[identity] = SessionData(identity, self.stats)
        return data

    # --- session -----------------------------------------------------------------------------------

    def _on_session(self, stream_id, value, partition, offset):
        message = m.parse_session(value)
        stream = self._stream(stream_id, partition)
        if stream is None:
            return
        same_session = stream.identity == message.id and stream.binding is not None
        declared = message.dependencies.keys() & {dependencies.DATA_FORMAT, dependencies.ATLAS_CONFIGURATION}
        if same_session and not declared:
            # A heartbeat or closing message may leave its dependencies out: those declared
            # before still hold. A restart must resume from the message that declared them.
            binding, session_offset = stream.binding, stream.session_offset
        else:
            binding, session_offset = self._binding(message.dependencies), offset
        ops, create = self._session_ops(message, binding)
        if stream.identity is not None and stream.identity != message.id:
            self._data(stream.identity).flush()  # the stream moved on to another session
        if stream.identity != message.id:
            stream.identity = message.id
            stream.last_lap = self._open_lap(message.id)
        if SessionState.is_closed(message.state):
            # A closed session: its data is flushed and its last lap ends with it.
            self._data(message.id).flush()
            ops += self._closing_ops(stream, close=False, activity_end=_activity_end(message))
        create_or_update_session(message.id, ops, create=create, sequence=offset)
        self._report_problem(stream, message.id, binding)
        stream.binding = binding
        stream.session_offset = session_offset
        self.stats.sessions.add(message.id)
        self._data(message.id)

    @staticmethod
    def _session_ops(message, binding):
        ops = [
            ("update_heartbeat", None),
            ("set_state", STATE_BY_NAME[message.state]),
            ("set_type", message.type or DEFAULT_TYPE),
            ("set_quality", DEFAULT_QUALITY if message.quality is None else message.quality),
        ]
        create = {"state": STATE_BY_NAME[message.state]}
        if message.identifier:
            ops.append(("set_identifier", message.identifier))
            create["identifier"] = message.identifier
        if message.details:
            ops.append(("update_details", {"details": message.details}))
        if message.group is not None:
            ops.append(("set_group", message.group))
        if message.version is not None:
            ops.append(("set_version", message.version))
        if message.start:
            start = parse_timestamp(message.start, "session.activity.start")
            ops.append(("set_timestamp", message.start))
            create["timestamp"] = message.start
            if message.duration is not None:
                ops.append(("extend_time_range", (start.ns, start.ns + message.duration)))
        if binding.config_bindings:
            ops.append(("update_config_bindings", binding.config_bindings))
        return ops, create

    @staticmethod
    def _open_lap(identity):
        """The session's lap still waiting for the next trigger (after a restart), if any."""
        marker = (
            Marker.objects.filter(session_id=identity, category=LAPS_CATEGORY, end_time__isnull=True)
            .order_by("-start_time")
            .first()
        )
        if marker is None or marker.start_time is None:
            return None
        return {
            "id": marker.marker_id,
            "category": LAPS_CATEGORY,
            "type": marker.type,
            "label": marker.label,
            "start_time": marker.start_time,
            "end_time": None,
            "details": marker.details,
        }

    # --- dependencies ------------------------------------------------------------------------------

    def _document(self, kind, ident):
        key = (kind, ident)
        if key not in self.documents:
            document = dependencies.find(kind, ident)
            if document is None:
                return None
            self.documents[key] = document
        return self.documents[key]

    def _binding(self, declared):
        format_ids = tuple(declared.get(dependencies.DATA_FORMAT, ()))
        atlas_ids = tuple(declared.get(dependencies.ATLAS_CONFIGURATION, ()))
        key = (format_ids, atlas_ids)
        binding = self.bindings.get(key)
        if binding is not None and (binding.problem is None or time.monotonic() < binding.retry_at):
            return binding
        binding = self.bindings[key] = self._resolve(format_ids, atlas_ids)
        binding.key = key
        return binding

    @staticmethod
    def _report_problem(stream, identity, binding):
        """Log why the session cannot record data, once per stream and reason (and when that ends)."""
        if binding.problem == stream.reported_problem:
            return
        if binding.problem is not None:
            log.warning("session %r cannot record data yet (its data is skipped): %s", identity, binding.problem)
        else:
            log.info("session %r: dependencies resolved, recording data", identity)
        stream.reported_problem = binding.problem

    def _resolve(self, format_ids, atlas_ids):
        retry_at = time.monotonic() + self.retry_seconds
        if not format_ids or not atlas_ids:
            return Binding(
                problem="the session declares no dataFormat or no atlasConfiguration dependency", retry_at=float("inf")
            )
        atlas_documents = []
        for ident in atlas_ids:
            document = self._document(dependencies.ATLAS_CONFIGURATION, ident)
            if document is None:
                return Binding(problem=f"atlasConfiguration {ident!r} is not published", retry_at=retry_at)
            atlas_documents.append(document)
        binding, offset = Binding(), 0
        for ident in format_ids:
            document = self._document(dependencies.DATA_FORMAT, ident)
            if document is None:
                return Binding(problem=f"dataFormat {ident!r} is not published", retry_at=retry_at)
            layout = formats.layout(ident, document)
            try:
                identifier = configs.publish(layout, atlas_ids, atlas_documents)
            except ServiceError as exc:
                return Binding(
                    problem=f"the config for dataFormat {ident!r} is invalid: {exc.message}", retry_at=float("inf")
                )
            binding.formats[ident] = (layout, offset)
            binding.config_bindings.append({"identifier": identifier, "channel_offset": offset})
            offset += layout.channel_count
        return binding

    def _recording(self, stream_id, partition):
        """``(stream, SessionData)`` when the stream's data can be recorded, else None (counted)."""
        stream = self._stream(stream_id, partition)
        if stream is None:
            return None
        if stream.identity is None:
            self.stats.skipped["before session"] += 1
            return None
        binding = stream.binding
        if binding.problem is not None:
            if time.monotonic() >= binding.retry_at:
                binding = self._binding(
                    {dependencies.DATA_FORMAT: binding.key[0], dependencies.ATLAS_CONFIGURATION: binding.key[1]}
                )
                if binding.problem is None:
                    create_or_update_session(stream.identity, [("update_config_bindings", binding.config_bindings)])
                for other in self.streams.values():
                    if other.binding is stream.binding:
                        other.binding = binding
                self._report_problem(stream, stream.identity, binding)
            if binding.problem is not None:
                self.stats.skipped["not recordable"] += 1
                return None
        return stream, self._data(stream.identity)

    @staticmethod
    def _format(stream, format_id, feed_name, what):
        entry = stream.binding.formats.get(format_id)
        if entry is None:
            raise m.MalformedMessage(
                "unknown format", f"{what}: format {format_id!r} is not a dataFormat dependency of the session"
            )
        layout, offset = entry
        feed = layout.feeds.get(feed_name)
        if feed is None:
            raise m.MalformedMessage("unknown feed", f"{what}: data format {format_id!r} has no feed {feed_name!r}")
        return feed, offset

    # --- data ------------------------------------------------------------------------------------

    def _feed_data(self, message_type, value, stream_id, partition):
        """``(message, session data, feed, channel offset)`` of a tsamples/tdata message; None if not recorded."""
        message = m.parse_data(message_type, value)
        target = self._recording(stream_id, partition)
        if target is None:
            return None
        stream, data = target
        return (message, data, *self._format(stream, message.format_id, message.feed, message_type))

    def _on_tsamples(self, stream_id, value, partition, offset):
        target = self._feed_data(m.TSAMPLES, value, stream_id, partition)
        if target is None:
            return
        message, data, feed, channel_offset = target
        series = []
        timebases = {}  # (epoch, id(times)) -> (sorted absolute times, sort order or None, timing)
        for key, epoch, times, values in message.parameters:
            parameter = _parameter(feed, key)
            if parameter is None:
                raise m.MalformedMessage(
                    "unknown parameter", f"tsamples: parameter {key!r} is not in feed {feed.name!r} of the format"
                )
            if not len(times):
                continue
            timebase = timebases.get((epoch, id(times)))
            if timebase is None:  # once per timebase, however many parameters share it
                timebase = timebases[(epoch, id(times))] = _timebase(epoch + times, f"tsamples parameter {key!r}")
            absolute, order, timing = timebase
            series.append(
                (
                    channel_offset + parameter.primary_channel,
                    absolute,
                    values if order is None else values[order],
                    timing,
                )
            )
        for channel, times, values, timing in series:
            self._write(data, channel, times, values, timing)

    def _on_tdata(self, stream_id, value, partition, offset):
        target = self._feed_data(m.TDATA, value, stream_id, partition)
        if target is None:
            return
        message, data, feed, channel_offset = target
        if message.by_position and len(message.parameters) != len(feed.parameters):
            raise m.MalformedMessage(
                "wrong types",
                f"tdata.data has {len(message.parameters)} entries for the {len(feed.parameters)} parameters "
                f"of feed {feed.name!r}",
            )
        times = message.epoch + message.times
        series = []
        for index, columns in message.parameters.items():
            parameter = _parameter(feed, index)
            if parameter is None:
                raise m.MalformedMessage(
                    "unknown parameter", f"tdata: parameter index {index} is not in feed {feed.name!r}"
                )
            status = columns["status"]
            present = status != 0  # "missing" samples are left out
            all_present = bool(present.all())
            for aggregate in parameter.aggregates:
                column = columns.get(aggregate)
                if column is None:
                    continue
                series.append(
                    (
                        channel_offset + parameter.channels[aggregate],
                        times if all_present else times[present],
                        column if all_present else column[present],
                    )
                )
        for channel, channel_times, values in series:
            self._write(data, channel, channel_times, values)

    def _write(self, data, channel, times, values, timing=None):
        """Write one channel's samples; ``timing`` (of sorted ``times``) comes from ``_timebase``."""
        if not len(times):
            return
        what = f"timestamped data for channel {channel:x}"
        if timing is None:
            times, order, timing = _timebase(times, what)
            if order is not None:
                values = values[order]
        mark = data.marks.get("timestamped", channel)
        if mark is not None and times[0] <= mark:
            # Possibly a replay: compare with what is stored (everything buffered is flushed first).
            data.flush()
            stored = data.marks.stored_times(channel, int(times[0]), min(int(times[-1]), mark))
            keep = new_mask(stored, times)
            dropped = len(times) - int(keep.sum())
            if dropped:
                self.stats.duplicates += dropped
                times, values = times[keep], values[keep]
                if not len(times):
                    return
                timing = TimestampedRun.timing(times, what)
        data.sink.add_timestamped(channel, times, values, timing)
        data.marks.advance("timestamped", channel, int(times[-1]))
        data.touched.add(("timestamped", channel))
        data.dirty = True
        self.stats.samples += len(times)

    def _on_events(self, stream_id, value, partition, offset):
        message = m.parse_data(m.EVENTS, value)
        target = self._recording(stream_id, partition)
        if target is None:
            return
        _, data = target
        timestamp = m.event_time(message)
        if not -(2**63) <= timestamp < 2**63:
            raise m.MalformedMessage("wrong types", "events: epoch + time is outside the int64 nanosecond range")
        definition = configs.event_definition_id(message.id)
        mark = data.marks.get("events", 0)
        if mark is not None and timestamp <= mark:
            data.flush()
            if (timestamp, definition) in data.marks.stored_events(timestamp, timestamp):
                self.stats.duplicates += 1
                return
        data.sink.add(
            "events",
            data_pb2.Event(
                event_definition_id=definition,
                app_name=configs.app_of(message.id),
                timestamp=timestamp,
                status_text=message.status,
                raw_data=message.values,
            ),
        )
        data.marks.advance("events", 0, timestamp)
        data.touched.add(("events", 0))
        data.dirty = True
        self.stats.events += 1

    # --- laps, sync ------------------------------------------------------------------------------

    def _on_lap(self, stream_id, value, partition, offset):
        message = m.parse_lap(value)
        stream = self._stream(stream_id, partition)
        if stream is None:
            return
        if stream.identity is None:
            self.stats.skipped["before session"] += 1
            return
        time_ns = message.epoch + message.time
        if not -(2**63) <= time_ns < 2**63:
            raise m.MalformedMessage("wrong types", "lap: epoch + time is outside the int64 nanosecond range")
        markers = []
        previous = stream.last_lap
        if previous is not None and previous["start_time"] < time_ns:
            markers.append({**previous, "end_time": time_ns})
        lap = None
        if message.trigger_source != TELEMETRY_END:
            lap = {
                "id": f"lap-{time_ns}",
                "category": LAPS_CATEGORY,
                "type": message.type,
                "label": f"Lap {message.number}",
                "start_time": time_ns,
                "end_time": None,
                "details": {"number": message.number, "triggerSource": message.trigger_source},
            }
            markers.append(lap)
        if markers:
            create_or_update_session(stream.identity, [("update_markers", markers)], sequence=offset)
        stream.last_lap = lap
        self.stats.laps += 1

    def _on_sync(self, stream_id, value, partition, offset):
        stream = self._stream(stream_id, partition)
        if stream is not None and stream.identity is not None:
            self._data(stream.identity).flush()

    # --- problems --------------------------------------------------------------------------------

    def _problem(self, reason, message, key, partition, offset):
        self.stats.malformed[reason] += 1
        self._logged += 1
        if self._logged <= MAX_LOGGED_PROBLEMS:
            shown = key if not isinstance(key, bytes) else key.decode("utf-8", "replace")
            log.warning("skipped message %r at %s/%s (%s): %s", shown, partition, offset, reason, message)
            if self._logged == MAX_LOGGED_PROBLEMS:
                log.warning("further skipped messages are counted but not logged")

    _handlers = {
        m.START: _on_start,
        m.END: _on_end,
        m.SESSION: _on_session,
        m.TSAMPLES: _on_tsamples,
        m.TDATA: _on_tdata,
        m.EVENTS: _on_events,
        m.LAP: _on_lap,
        m.SYNC: _on_sync,
    }


def _activity_end(message):
    if not message.start or message.duration is None:
        return None
    return parse_timestamp(message.start, "session.activity.start").ns + message.duration


def _timebase(times, what):
    """``(sorted times, the order that sorts them or None, their TimestampedRun timing)``."""
    order = None
    if len(times) > 1 and (np.diff(times) < 0).any():
        order = np.argsort(times, kind="stable")
        times = times[order]
    return times, order, TimestampedRun.timing(times, what)


def _parameter(feed, key):
    if isinstance(key, str):
        return feed.by_identifier.get(key)
    return feed.parameters[key] if 0 <= key < len(feed.parameters) else None
