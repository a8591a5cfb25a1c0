"""Decoding of ATLAS Advanced Streams messages (spec §11): keys, JSON values and the protobuf codec.

A key is ``<type>:<stream id>`` in UTF-8. Values are empty, JSON, or (for
``tdata``, ``tsamples`` and ``events``) a message of the protobuf codec, which
shares the JSON message types. They are told apart by their first byte: a
JSON value is an object, so it starts with ``{`` (perhaps after whitespace),
and no codec message can start with ``{`` (0x7B would be field 15, wire type
3, which none of them has; ``[`` is taken as JSON too, and refused as not an
object). A value starting with whitespace could be either
(``\\n`` is also the tag of a codec field 1), so it is tried as JSON first
and as protobuf when that fails. A codec message must carry no field its
message type lacks, so text that happens to parse as protobuf is refused.

Everything is checked before anything is returned: a ``MalformedMessage``
means nothing of the message may be applied. Number arrays become numpy
arrays without per-sample Python work. Integers (times above all) may be
written as JSON floats holding whole numbers (``10000000.0``, as the official
Python client writes times); any other float where an integer belongs is
malformed.
"""

from dataclasses import dataclass, field

import numpy as np
import orjson
from advanced_streams import codec_pb2
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from data_app.ingest import samples_wire
from rta_core.errors import excerpt

START = "$start"
END = "$end"
SESSION = "session"
TDATA = "tdata"
TSAMPLES = "tsamples"
EVENTS = "events"
LAP = "lap"
SYNC = "sync"
KNOWN_TYPES = frozenset((START, END, SESSION, TDATA, TSAMPLES, EVENTS, LAP, SYNC))
AGGREGATES = ("avg", "min", "max", "first")
STATES = ("waiting", "open", "closed", "truncated", "failed", "abandoned")
INT64_MAX = 2**63 - 1
_WHITESPACE = b" \t\r\n"


class MalformedMessage(Exception):
    """A message that cannot be used; ``reason`` is a short category for the counters."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


def split_key(key):
    """``(type, stream id)`` from a message key (bytes or str)."""
    if key is None:
        raise MalformedMessage("bad key", "message has no key")
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            key = bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("bad key", "message key is not UTF-8") from None
    message_type, colon, stream_id = key.partition(":")
    if not colon or not message_type:
        raise MalformedMessage("bad key", f"message key {key[:200]!r} is not <type>:<stream id>")
    return message_type, stream_id


# --- decoded messages --------------------------------------------------------------------------


@dataclass
class SessionMessage:
    id: str
    state: str
    type: str | None = None
    quality: float | None = None
    identifier: str | None = None
    details: dict = field(default_factory=dict)
    group: str | None = None
    version: str | None = None
    dependencies: dict = field(default_factory=dict)
    start: str | None = None
    duration: int | None = None


@dataclass
class Samples:
    """``tsamples``: per parameter (identifier in JSON, data-format index in protobuf) its own timebase."""

    format_id: str
    feed: str
    parameters: list  # [(key, epoch, times int64[], values float64[])]; parameters may share a times array

    def sample_count(self):
        return sum(len(p[2]) for p in self.parameters)


@dataclass
class Aggregates:
    """``tdata``: one timebase; per parameter index its statuses and aggregate arrays."""

    format_id: str
    feed: str
    epoch: int
    times: np.ndarray
    parameters: dict  # index -> {"status": uint32[], "avg": float64[] | absent, ...}
    by_position: bool  # JSON: one entry per feed parameter, in order; protobuf: indexed map


@dataclass
class EventMessage:
    epoch: int
    time: int
    id: str
    status: str
    values: list


@dataclass
class LapMessage:
    number: int
    epoch: int
    time: int
    type: str
    trigger_source: int


# --- value parsing --------------------------------------------------------------------------------


def _json_object(value, message_type):
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage("bad json", f"{message_type} value is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedMessage("bad json", f"{message_type} value is not a JSON object")
    return document


def _looks_like_json(value):
    """True / False, or None when only trying can tell (leading whitespace)."""
    if not value:
        return True
    first = value[0]
    if first in (0x7B, 0x5B):  # "{" or "[" (wire type 3 of fields 15 and 11: no codec message has them)
        return True
    if first in _WHITESPACE:
        return None
    return False


def _wrong(path, expected, value):
    raise MalformedMessage("wrong types", f"{path} must be {expected}, got {type(value).__name__}")


def _integer(value):
    """``value`` as an int64 if it is one, or a float holding a whole number (as some producers write
    times: ``10000000.0``); None otherwise (non-integral, non-finite, out of range, not a number)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -INT64_MAX - 1 <= value <= INT64_MAX:
        return None
    return value


def _int(document, key, path, required=True, default=0):
    value = document.get(key)
    if value is None:
        if required:
            raise MalformedMessage("wrong types", f"{path}.{key} is required")
        return default
    integer = _integer(value)
    if integer is None:
        raise MalformedMessage("wrong types", f"{path}.{key} must be a 64-bit integer, got {excerpt(value)}")
    return integer


def _str(document, key, path, required=True, default=None):
    value = document.get(key)
    if value is None:
        if required:
            raise MalformedMessage("wrong types", f"{path}.{key} is required")
        return default
    if not isinstance(value, str):
        _wrong(f"{path}.{key}", "a string", value)
    return value


def int_array(value, path):
    """A JSON array of integers as int64[] (no per-element Python work for well-formed input)."""
    if not isinstance(value, list):
        _wrong(path, "an array of integers", value)
    if not value:
        return np.empty(0, np.int64)
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        raise MalformedMessage("wrong types", f"{path} must be an array of integers") from None
    if array.ndim == 1 and array.dtype.kind == "f":
        return _whole_floats(value, array, path)
    if array.ndim != 1 or array.dtype.kind not in "iu" or (array.dtype.kind == "u" and array.max() > INT64_MAX):
        raise MalformedMessage("wrong types", f"{path} must be an array of 64-bit integers")
    return array.astype(np.int64, copy=False)


def _whole_floats(value, array, path):
    """int64[] of a JSON array holding floats: each must be a whole number in the int64 range."""
    whole = np.isfinite(array) & (np.trunc(array) == array) & (array >= -(2.0**63)) & (array < 2.0**63)
    if not whole.all():
        index = int(np.argmin(whole))
        raise MalformedMessage(
            "wrong types", f"{path}[{index}] must be a whole number (64-bit integer), got {excerpt(value[index])}"
        )
    if np.abs(array).max() <= 2.0**53:  # every int and float of the list is exact in float64
        return array.astype(np.int64)
    return np.array([int(v) for v in value], dtype=np.int64)  # ints beside floats keep all their digits


def float_array(value, path):
    """A JSON array of numbers as float64[]; ``null`` entries become NaN (JSON has no NaN)."""
    if not isinstance(value, list):
        _wrong(path, "an array of numbers", value)
    if not value:
        return np.empty(0, np.float64)
    try:
        array = np.array(value)
        if array.dtype == object:
            array = np.array([np.nan if v is None else v for v in value])
    except (ValueError, OverflowError, TypeError):
        raise MalformedMessage("wrong types", f"{path} must be an array of numbers") from None
    if array.ndim != 1 or array.dtype.kind not in "iuf":
        raise MalformedMessage("wrong types", f"{path} must be an array of numbers")
    return array.astype(np.float64, copy=False)


def _status_array(value, path):
    statuses = int_array(value, path)
    if len(statuses) and (statuses.min() < 0 or statuses.max() > 0xFFFFFFFF):
        raise MalformedMessage("wrong types", f"{path} must hold status flags (0-4294967295)")
    return statuses


def _object(document, key):
    value = document.get(key)
    return {} if value is None else value


def parse_session(value):
    document = _json_object(value, SESSION)
    path = SESSION
    session_id = _str(document, "id", path)
    if not session_id:
        raise MalformedMessage("wrong types", "session.id must not be empty")
    state = _str(document, "state", path)
    if state not in STATES:
        raise MalformedMessage("wrong types", f"session.state {state!r} is not one of {', '.join(STATES)}")
    quality = document.get("quality")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, (int, float))):
        _wrong("session.quality", "a number", quality)
    details = _object(document, "details")
    if not isinstance(details, dict):
        _wrong("session.details", "an object", details)
    for key, detail in details.items():
        if isinstance(detail, (dict, list)) or detail is None:
            raise MalformedMessage("wrong types", f"session.details[{key!r}] must be a string")
    model = _object(document, "model")
    if not isinstance(model, dict):
        _wrong("session.model", "an object", model)
    group = _str(model, "group", "session.model", required=False)
    version = model.get("version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (int, str)):
            _wrong("session.model.version", "an integer", version)
        version = str(version)
    dependencies = _object(document, "dependencies")
    if not isinstance(dependencies, dict):
        _wrong("session.dependencies", "an object of id lists", dependencies)
    for kind, ids in dependencies.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise MalformedMessage("wrong types", f"session.dependencies[{kind!r}] must be a list of ids")
    activity = _object(document, "activity")
    if not isinstance(activity, dict):
        _wrong("session.activity", "an object", activity)
    start = _str(activity, "start", "session.activity", required=False)
    duration = activity.get("durationNanos")
    if duration is not None:
        duration = _integer(duration)
        if duration is None or duration < 0:
            raise MalformedMessage("wrong types", "session.activity.durationNanos must be a non-negative integer")
    return SessionMessage(
        id=session_id,
        state=state,
        type=_str(document, "type", path, required=False),
        quality=quality,
        identifier=_str(document, "identifier", path, required=False),
        details=details,
        group=group,
        version=version,
        dependencies=dependencies,
        start=start,
        duration=duration,
    )


def parse_lap(value):
    document = _json_object(value, LAP)
    lap_type = _str(document, "type", LAP)
    return LapMessage(
        number=_int(document, "number", LAP),
        epoch=_int(document, "epoch", LAP, required=False),
        time=_int(document, "time", LAP),
        type=lap_type,
        trigger_source=_int(document, "triggerSource", LAP),
    )


def _check_time(epoch, times, path):
    """Absolute times must fit int64."""
    if len(times):
        low, high = int(times.min()), int(times.max())
        if epoch + low < -INT64_MAX - 1 or epoch + high > INT64_MAX:
            raise MalformedMessage("wrong types", f"{path}: epoch + time is outside the int64 nanosecond range")


def _samples_json(document):
    format_id = _str(document, "format", TSAMPLES)
    feed = _str(document, "feed", TSAMPLES, required=False, default="")
    data = document.get("data")
    if not isinstance(data, dict):
        _wrong("tsamples.data", "an object of parameters", data)
    parameters = []
    for identifier, entry in data.items():
        path = f"tsamples.data[{identifier!r}]"
        if not isinstance(entry, dict):
            _wrong(path, "an object", entry)
        epoch = _int(entry, "epoch", path)
        times = int_array(entry.get("time"), f"{path}.time")
        values = float_array(entry.get("values"), f"{path}.values")
        if len(times) != len(values):
            raise MalformedMessage("wrong types", f"{path}: {len(times)} times but {len(values)} values")
        _check_time(epoch, times, path)
        parameters.append((identifier, epoch, times, values))
    return Samples(format_id, feed, parameters)


def _aggregates_json(document):
    format_id = _str(document, "format", TDATA)
    feed = _str(document, "feed", TDATA, required=False, default="")
    epoch = _int(document, "epoch", TDATA, required=False)
    times = int_array(document.get("time"), "tdata.time")
    _check_time(epoch, times, "tdata")
    data = document.get("data")
    if not isinstance(data, list):
        _wrong("tdata.data", "an array", data)
    parameters = {}
    for index, entry in enumerate(data):
        path = f"tdata.data[{index}]"
        if not isinstance(entry, dict):
            _wrong(path, "an object", entry)
        columns = {"status": _status_array(entry.get("status"), f"{path}.status")}
        for name in AGGREGATES:
            if entry.get(name) is not None:
                columns[name] = float_array(entry[name], f"{path}.{name}")
        for name, column in columns.items():
            if len(column) != len(times):
                raise MalformedMessage("wrong types", f"{path}.{name} has {len(column)} entries for {len(times)} times")
        parameters[index] = columns
    return Aggregates(format_id, feed, epoch, times, parameters, by_position=True)


def _event_json(document):
    values = document.get("values")
    if values is None:
        values = []
    return EventMessage(
        epoch=_int(document, "epoch", EVENTS),
        time=_int(document, "time", EVENTS),
        id=_str(document, "id", EVENTS),
        status=_str(document, "status", EVENTS, required=False, default=""),
        values=float_array(values, "events.values").tolist(),
    )


# --- protobuf codec ----------------------------------------------------------------------------


def _codec(message_class, value, message_type):
    try:
        message = message_class.FromString(value)
    except DecodeError:
        raise MalformedMessage("bad protobuf", f"{message_type} value is neither JSON nor a codec message") from None
    if len(UnknownFieldSet(message)):
        raise MalformedMessage("bad protobuf", f"{message_type} value is neither JSON nor a codec message")
    return message


def _samples_codec(value):
    read = samples_wire.read_samples(value)
    if read is None:  # a layout the wire reader leaves to protobuf (which may refuse it)
        message = _codec(codec_pb2.ParameterSamplesMessage, value, TSAMPLES)
        read = message.dataFormatId, message.feed, _samples_protobuf(message)
    format_id, feed, parameters = read
    checked = set()  # (epoch, times) pairs whose range is known to fit
    for index, epoch, times, values in parameters:
        path = f"tsamples.parameters[{index}]"
        if len(times) != len(values):
            raise MalformedMessage("wrong types", f"{path}: {len(times)} times but {len(values)} values")
        if (epoch, id(times)) not in checked:
            _check_time(epoch, times, path)
            checked.add((epoch, id(times)))
    return Samples(format_id, feed, parameters)


def _samples_protobuf(message):
    """``(index, epoch, times, values)`` of each parameter of a parsed ParameterSamplesMessage."""
    parameters = []
    for index, entry in message.parameters.items():
        if len(UnknownFieldSet(entry)):
            raise MalformedMessage(
                "bad protobuf", f"tsamples.parameters[{index}] is not a ParameterSampleValuesWithTimestamps"
            )
        parameters.append(
            (
                index,
                entry.epoch_nanos,
                np.array(entry.timestamps_nanos, dtype=np.int64),
                np.array(entry.values, dtype=np.float64),
            )
        )
    return parameters


_CODEC_COLUMNS = (("avg", "avg_values"), ("min", "min_values"), ("max", "max_values"), ("first", "first_values"))


def _aggregates_codec(value):
    message = _codec(codec_pb2.ParameterDataMessage, value, TDATA)
    times = np.array(message.timestamps_nanos, dtype=np.int64)
    _check_time(message.epoch_nanos, times, "tdata")
    parameters = {}
    for index, entry in message.parameters.items():
        path = f"tdata.parameters[{index}]"
        if len(UnknownFieldSet(entry)):
            raise MalformedMessage("bad protobuf", f"{path} is not a ParameterDataValues")
        columns = {"status": np.array(entry.statuses, dtype=np.int64)}
        for name, attribute in _CODEC_COLUMNS:
            column = getattr(entry, attribute)
            if len(column):
                columns[name] = np.array(column, dtype=np.float64)
        for name, column in columns.items():
            if len(column) != len(times):
                raise MalformedMessage("wrong types", f"{path}.{name} has {len(column)} entries for {len(times)} times")
        parameters[index] = columns
    return Aggregates(message.dataFormatId, message.feed, message.epoch_nanos, times, parameters, by_position=False)


def _event_codec(value):
    message = _codec(codec_pb2.EventMessage, value, EVENTS)
    if not message.id:
        raise MalformedMessage("wrong types", "events.id is required")
    return EventMessage(message.epoch_nanos, message.timestamps_nanos, message.id, message.status, list(message.values))


_DATA_PARSERS = {
    TSAMPLES: (_samples_json, _samples_codec),
    TDATA: (_aggregates_json, _aggregates_codec),
    EVENTS: (_event_json, _event_codec),
}


def parse_data(message_type, value):
    """A ``tsamples`` / ``tdata`` / ``events`` value, JSON or protobuf codec."""
    if value is None or len(value) == 0:
        raise MalformedMessage("empty value", f"{message_type} message has no value")
    from_json, from_codec = _DATA_PARSERS[message_type]
    looks_json = _looks_like_json(value)
    if looks_json:
        return from_json(_json_object(value, message_type))
    if looks_json is None:
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            return from_codec(value)
        if not isinstance(document, dict):
            raise MalformedMessage("bad json", f"{message_type} value is not a JSON object")
        return from_json(document)
    return from_codec(value)


def event_time(message):
    return message.epoch + message.time
