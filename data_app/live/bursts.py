"""``StreamDataBurst`` payloads: encoding items, scanning bursts, filtering by subscription.

A serialized ``StreamDataBurst`` is a run of field-1 records, one per
``StreamData``. Concatenating serialized bursts gives a valid burst holding
every item in order (protobuf merges repeated fields), so bursts are built and
re-batched as byte strings: items are encoded once by the writer, and a reader
only scans record boundaries and each record's oneof field number; it parses
an item (for its channel ids) only to filter a partial subscription.
"""

from rta.model import data_pb2
from rta.model.net import stream_pb2

from rta_kit.varints import encode_varint

# StreamData oneof field numbers (spec §10).
SESSION_JSON, TIME_RANGE, TIMESTAMPED, PERIODIC, ROW, EVENT = 2, 3, 4, 5, 6, 7
FIELDS = {"timestamped": TIMESTAMPED, "periodic": PERIODIC, "row": ROW, "events": EVENT}
DATA_FIELDS = {TIMESTAMPED, PERIODIC, ROW}
ITEM_TYPES = {
    TIMESTAMPED: data_pb2.TimestampedData,
    PERIODIC: data_pb2.PeriodicData,
    ROW: data_pb2.RowData,
    EVENT: data_pb2.Event,
}
_BURST_DATA_TAG = b"\x0a"  # StreamDataBurst.data = 1, length-delimited


class BurstError(ValueError):
    """A payload that is not a well-formed ``StreamDataBurst``."""


def _read_varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BurstError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise BurstError("varint longer than 10 bytes")


def record(field, body):
    """One burst record: a ``StreamData`` whose oneof ``field`` holds the serialized ``body``."""
    data = bytes([field << 3 | 2]) + encode_varint(len(body)) + body
    return _BURST_DATA_TAG + encode_varint(len(data)) + data


def item_record(kind, item):
    """The burst record of a data item (``kind`` as the chunk store names it)."""
    return record(FIELDS[kind], item.SerializeToString())


def json_record(text):
    return record(SESSION_JSON, text.encode("utf-8"))


def time_range_record(start, end):
    return record(TIME_RANGE, stream_pb2.StreamTimeRange(start_time=start, end_time=end).SerializeToString())


def burst(records):
    """A serialized ``StreamDataBurst`` from records."""
    return b"".join(records)


def scan(payload):
    """``[(field, start, end)]``: each record's oneof field and its byte span in ``payload``.

    Records whose ``StreamData`` is not a single oneof field (unknown fields,
    several fields) are canonicalised through protobuf: their entry then holds
    the re-encoded bytes instead of a span.
    """
    out, pos, n = [], 0, len(payload)
    while pos < n:
        start = pos
        tag, pos = _read_varint(payload, pos)
        if tag != 0x0A:
            raise BurstError(f"unexpected field tag {tag} in StreamDataBurst")
        length, body = _read_varint(payload, pos)
        end = body + length
        if end > n:
            raise BurstError("truncated StreamData")
        field, fast = 0, False
        if length:
            inner_tag, inner = _read_varint(payload, body)
            if inner_tag & 7 == 2:
                inner_len, value = _read_varint(payload, inner)
                fast = value + inner_len == end
                field = inner_tag >> 3
        if not fast:
            canonical = _canonical(payload[body:end])
            if canonical is not None:
                out.append(canonical)
        else:
            out.append((field, start, end))
        pos = end
    return out


def _canonical(body):
    try:
        data = stream_pb2.StreamData.FromString(body)
    except Exception as exc:  # protobuf's DecodeError and friends: the record is malformed
        raise BurstError(f"malformed StreamData: {exc}") from None
    which = data.WhichOneof("type")
    if which is None:
        return None  # nothing we know: dropped
    field = data.DESCRIPTOR.fields_by_name[which].number
    if field == SESSION_JSON:
        value = data.session_json.encode("utf-8")
    else:
        value = getattr(data, which).SerializeToString()
    return (field, record(field, value))


class Record:
    """One item of a scanned burst: its oneof field and record bytes, channels parsed on demand."""

    __slots__ = ("field", "raw", "_channels")

    def __init__(self, field, raw):
        self.field, self.raw, self._channels = field, raw, None

    @property
    def channels(self):
        if self._channels is None:
            self._channels = _channels_of(self.field, self.raw)
        return self._channels

    def value(self):
        """The item's decoded protobuf message (or the JSON text)."""
        return _value(self.field, self.raw)


def records(payload, spans=None):
    """The ``Record``s of a burst payload (``spans`` from ``scan`` when already known)."""
    spans = scan(payload) if spans is None else spans
    out = []
    for span in spans:
        if len(span) == 3:
            field, start, end = span
            out.append(Record(field, payload[start:end]))
        else:
            out.append(Record(*span))
    return out


def _body(raw):
    """The oneof value bytes of a record (a record made by ``record``/``scan`` holds exactly one)."""
    _, pos = _read_varint(raw, 0)
    _, pos = _read_varint(raw, pos)
    _, pos = _read_varint(raw, pos)
    _, pos = _read_varint(raw, pos)
    return raw[pos:]


def _value(field, raw):
    body = _body(raw)
    if field == SESSION_JSON:
        return body.decode("utf-8")
    if field == TIME_RANGE:
        return stream_pb2.StreamTimeRange.FromString(body)
    item_type = ITEM_TYPES.get(field)
    return item_type.FromString(body) if item_type else None


def _channels_of(field, raw):
    if field not in DATA_FIELDS:
        return ()
    try:
        item = _value(field, raw)
    except Exception:  # a malformed item matches no channel rather than breaking the stream
        return ()
    return tuple(item.channel_ids) if field == ROW else (item.channel_id,)


class Subscription:
    """What a client asked for (spec §10): every request widens the previous one."""

    __slots__ = ("events", "all_channels", "channels")

    def __init__(self, events=False, all_channels=False, channels=frozenset()):
        self.events, self.all_channels = events, all_channels
        self.channels = frozenset() if all_channels else frozenset(channels)

    def widen(self, request):
        """This subscription widened by a ``StreamSubscription`` message."""
        return Subscription(
            self.events or request.all_events,
            self.all_channels or request.all_data_channels,
            self.channels | frozenset(request.data_channel_ids),
        )

    @property
    def full(self):
        return self.events and self.all_channels

    @property
    def empty(self):
        return not (self.events or self.all_channels or self.channels)

    def matches(self, rec):
        if rec.field == EVENT:
            return self.events
        if rec.field in DATA_FIELDS:
            if self.all_channels:
                return True
            return any(c in self.channels for c in rec.channels)
        return False

    def __eq__(self, other):
        return isinstance(other, Subscription) and (self.events, self.all_channels, self.channels) == (
            other.events,
            other.all_channels,
            other.channels,
        )

    def __repr__(self):
        return f"Subscription(events={self.events}, all_channels={self.all_channels}, channels={sorted(self.channels)})"
