"""What a data binding does to one stored chunk: time offset, clipping, channel re-mapping.

``apply`` takes the unpacked serialized list of one chunk (data time, data
channels) and returns it re-serialized in session time and session channels,
with the first/last sample time left inside, or ``None`` when clipping leaves
nothing; ``apply_packed`` does the same from the chunk as stored or received
(LZ4 or not). ``merge`` does it for the chunks of several bindings served as
one ``Window``. The result depends only on the chunks and the bindings, never
on the request, so a transformed chunk is as stable as a stored one.

Work is per item, never per sample, and mostly not even per item: a time
offset only moves each item's start (periodic, timestamped) or timestamp
(row, events), a fixed 8-byte field, and re-mapping only rewrites its channel
field, so both are written straight into the list's wire bytes
(``rta_kit.patching``: a few numpy operations per run of equal items);
clipping keeps or drops items by their first and last sample times, read
from the same bytes (periodic: start, interval and samples; timestamped: the
deltas decoded for all items at once), and parses only the items that
straddle a bound. Lists in a layout ``patching`` does not take (see there),
and merged windows, go through protobuf: parse, change, serialise. Both ways
give the same bytes (``tests/test_transforms_fast.py``).
"""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
from rta.model import data_pb2

from rta_kit import patching, wire
from rta_kit.varints import encode_varint


@dataclass(frozen=True)
class ChunkTransform:
    """A binding as applied to one chunk.

    ``low``/``high`` keep samples whose *data* time lies in ``[low, high]``
    (either may be ``None``, unbounded; both ``None``: no clipping);
    ``offset`` is added to every time (session time = data time + offset);
    ``channel_ids`` are the session channels to serve the chunk as (periodic
    and timestamped: one id; row: the set, in the stored order).
    """

    offset: int = 0
    low: int | None = None
    high: int | None = None
    channel_ids: tuple | None = None

    @property
    def clips(self):
        return self.low is not None or self.high is not None


@dataclass(frozen=True)
class Transformed:
    payload: bytes
    start: int
    end: int
    channel_ids: list


def _transformed_message(kind, payload, transform, ref):
    """``(message, first, last)`` in session time, or None when nothing is left."""
    message = wire.LIST_TYPES[kind].FromString(payload)
    message, bounds = _APPLY[kind](message, transform)
    if message is None:
        return None
    # Unclipped, nothing was removed: the index already knows the first and last sample.
    first, last = bounds if transform.clips else (ref.start_time, ref.end_time)
    return message, first + transform.offset, last + transform.offset


def apply(kind, payload, transform, ref):
    """``payload``, the unpacked list of the chunk ``ref`` indexes, transformed; None when nothing is left.

    ``payload`` is any bytes-like object; a bytearray is written into (the
    caller's own buffer: no copy), anything else copied first. ``ref`` needs
    ``start_time``, ``end_time`` (data time) and ``channel_ids``. The returned
    payload is bytes-like (bytes, bytearray or memoryview).
    """
    channel_ids = list(transform.channel_ids) if transform.channel_ids is not None else list(ref.channel_ids)
    source, first, last = payload, ref.start_time, ref.end_time
    if transform.clips:
        clipped = _clipped_wire(kind, payload, transform.low, transform.high)
        if clipped is _NOTHING_LEFT:
            return None
        if clipped is not None:
            source, first, last = clipped
    if not transform.clips or clipped is not None:
        patched = patching.shifted(kind, source, transform.offset, transform.channel_ids)
        if patched is not None:
            offset = transform.offset
            return Transformed(patched, first + offset, last + offset, channel_ids)
    out = _transformed_message(kind, payload, transform, ref)
    if out is None:
        return None
    message, first, last = out
    return Transformed(message.SerializeToString(), first, last, channel_ids)


def apply_packed(kind, packed, unpacked_length, compression, transform, ref):
    """``apply`` to a chunk as stored or received: decompressed into a buffer of its own and patched there."""
    return apply(kind, patching.unpacked(packed, unpacked_length, compression), transform, ref)


_NOTHING_LEFT = object()


def _clipped_wire(kind, payload, low, high):
    """``(list, first, last)``: the items of ``payload`` clipped to ``[low, high]`` (data time), found in its bytes.

    Items wholly inside are kept as they are and items wholly outside left out,
    by their first and last sample times (``_item_spans``); only a periodic or
    timestamped item straddling a bound is parsed, and cut as protobuf's way
    does. ``_NOTHING_LEFT`` when no sample is left; None when this way does not
    apply (a layout ``patching`` does not know, items the store would refuse).
    """
    groups = patching.scan(kind, payload)
    if groups is None:
        return None
    view, pieces, spans = memoryview(payload), [], []
    for group in groups:
        start, count, layout = group
        item_spans = _item_spans(kind, payload, group)
        if item_spans is None:
            return None
        firsts, lasts = item_spans
        inside = np.ones(count, dtype=bool)
        outside = np.zeros(count, dtype=bool)
        if low is not None:  # (numpy compares int64 with any Python int exactly)
            inside &= firsts >= low
            outside |= lasts < low
        if high is not None:
            inside &= lasts <= high
            outside |= firsts > high
        state = inside.view(np.int8) + 2 * ~(inside | outside)  # 0 left out, 1 kept, 2 straddling a bound
        edges = [0, *(np.flatnonzero(np.diff(state)) + 1).tolist(), count]
        size = layout.size
        for i, j in zip(edges, edges[1:]):
            if state[i] == 1:
                pieces.append(view[start + i * size : start + j * size])
                spans.append((int(firsts[i:j].min()), int(lasts[i:j].max())))
            elif state[i] == 2:
                for k in range(i, j):
                    entry = start + k * size
                    item = _CUT[kind](ITEM_TYPES[kind].FromString(view[entry + layout.body : entry + size]), low, high)
                    if item is not None:
                        body = item.SerializeToString()
                        pieces.append(b"\x0a" + encode_varint(len(body)) + body)
                        spans.append(_ITEM_SPAN[kind](item))
    if not pieces:
        return _NOTHING_LEFT
    first, last = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    return bytearray().join(pieces), first, last


def _item_spans(kind, payload, group):
    """Each entry's first and last sample time (int64 arrays), or None for items the store would refuse."""
    times = patching.times(payload, group)
    layout = group.layout
    if kind == "periodic":
        samples, interval = patching.signed(layout.varints.get(4, 0), 32), patching.signed(layout.varints.get(3, 0))
        if samples < 1 or (samples > 1 and interval <= 0):
            return None
        span = (samples - 1) * interval
        if span > patching.INT64_MAX or int(times.max()) > patching.INT64_MAX - span:
            return None
        return times, times + span if span else times
    if kind == "timestamped":
        sums = patching.delta_sums(payload, group)
        scale = patching.signed(layout.varints.get(3, 0)) or 1
        if sums is None or scale < 1:
            return None
        first, total = sums
        reach = scale * int(total.max())  # from an item's start to its last sample, at most
        if reach > patching.INT64_MAX or int(times.max()) > patching.INT64_MAX - reach:
            return None
        return times + scale * first, times + scale * total
    return times, times


@dataclass(frozen=True)
class Window:
    """One served chunk merged from several bindings feeding the same session channel(s) at once.

    ``parts`` are ``(ChunkRef, ChunkTransform)`` pairs whose transforms clip to
    the window ``[start, end]`` (session time) as well as to their binding, so the
    window's content does not depend on the request.
    """

    start: int
    end: int
    channel_ids: tuple
    parts: tuple

    @property
    def refs(self):
        return [ref for ref, _ in self.parts]


MERGE = "merge"  # the transform that goes with a Window


def merge(kind, window, payloads):
    """The window's parts (``payloads``: their unpacked lists, in order) as one list in time order, or None."""
    field = _FIELDS[kind]
    merged, first, last = [], None, None
    for index, ((ref, transform), payload) in enumerate(zip(window.parts, payloads)):
        out = _transformed_message(kind, payload, transform, ref)
        if out is None:
            continue
        message, lo, hi = out
        first = lo if first is None or lo < first else first
        last = hi if last is None or hi > last else last
        merged += ((_ITEM_TIME[kind](item), index, n, item) for n, item in enumerate(getattr(message, field)))
    if not merged:
        return None
    merged.sort(key=lambda entry: entry[:3])
    message = wire.LIST_TYPES[kind]()
    getattr(message, field).extend(entry[3] for entry in merged)
    return Transformed(message.SerializeToString(), first, last, list(window.channel_ids))


def _replaced(message, field, kept):
    """A new list message holding copies of ``kept`` (items of ``message`` or new ones)."""
    out = type(message)()
    getattr(out, field).extend(kept)
    return out


def _below(t, low):
    return low is not None and t < low


def _above(t, high):
    return high is not None and t > high


def _channel(tf):
    return tf.channel_ids[0] if tf.channel_ids is not None else None


def _shift(items, offset, channel):
    """Periodic and timestamped items: move each item's start, rewrite its channel (no per-sample work)."""
    if offset and channel is not None:
        for item in items:
            item.start_timestamp += offset
            item.channel_id = channel
    elif offset:
        for item in items:
            item.start_timestamp += offset
    elif channel is not None:
        for item in items:
            item.channel_id = channel


def _periodic(message, tf):
    bounds = None
    if tf.clips:
        pieces = (_clip_periodic(item, tf.low, tf.high) for item in message.periodic_data)
        kept = [piece for piece in pieces if piece is not None]
        if not kept:
            return None, None
        bounds = (
            min(p.start_timestamp for p in kept),
            max(p.start_timestamp + (p.samples - 1) * p.interval for p in kept),
        )
        message = _replaced(message, "periodic_data", kept)
    _shift(message.periodic_data, tf.offset, _channel(tf))
    return message, bounds


def _clip_periodic(item, low, high):
    n, interval, first = item.samples, item.interval, item.start_timestamp
    last = first + (n - 1) * interval
    if _above(first, high) or _below(last, low):
        return None
    if not _below(first, low) and not _above(last, high):
        return item
    # Only reached with n > 1 (a single sample is wholly in or out), so interval > 0.
    i0 = 0 if low is None or first >= low else -((first - low) // interval)  # ceil((low - first) / interval)
    i1 = n - 1 if high is None or last <= high else (high - first) // interval
    if i0 > i1:
        return None
    width = len(item.buffer) // n
    return type(item)(
        channel_id=item.channel_id,
        start_timestamp=first + i0 * interval,
        interval=interval,
        samples=i1 - i0 + 1,
        buffer=item.buffer[i0 * width : (i1 + 1) * width],
    )


def _timestamped(message, tf):
    bounds = None
    if tf.clips:
        pieces = (_clip_timestamped(item, tf.low, tf.high) for item in message.timestamped_data)
        kept = [piece for piece in pieces if piece is not None]
        if not kept:
            return None, None
        spans = [_ts_bounds(p) for p in kept]
        bounds = (min(first for first, _ in spans), max(last for _, last in spans))
        message = _replaced(message, "timestamped_data", kept)
    _shift(message.timestamped_data, tf.offset, _channel(tf))
    return message, bounds


def _ts_bounds(item):
    scale = item.timestamp_deltas_scale or 1
    deltas = item.timestamp_deltas
    if not deltas:
        return item.start_timestamp, item.start_timestamp
    return item.start_timestamp + scale * deltas[0], item.start_timestamp + scale * sum(deltas)


def _clip_timestamped(item, low, high):
    first, last = _ts_bounds(item)
    if _above(first, high) or _below(last, low):
        return None
    if not _below(first, low) and not _above(last, high):
        return item
    scale, deltas = item.timestamp_deltas_scale or 1, list(item.timestamp_deltas)
    times = [item.start_timestamp + scale * d for d in accumulate(deltas)]
    i0 = 0 if low is None else bisect_left(times, low)
    i1 = len(times) if high is None else bisect_right(times, high)
    if i0 >= i1:
        return None
    width = len(item.buffer) // len(deltas)
    return type(item)(
        channel_id=item.channel_id,
        start_timestamp=times[i0],
        timestamp_deltas_scale=item.timestamp_deltas_scale,
        timestamp_deltas=[0, *deltas[i0 + 1 : i1]],
        buffer=item.buffer[i0 * width : i1 * width],
    )


def _stamped(field):
    """Row data and events: one time per item, clipped by filtering."""

    def transform(message, tf):
        bounds = None
        if tf.clips:
            low, high = tf.low, tf.high
            items = getattr(message, field)
            kept = [item for item in items if not _below(item.timestamp, low) and not _above(item.timestamp, high)]
            if not kept:
                return None, None
            times = [item.timestamp for item in kept]
            bounds = (min(times), max(times))
            if len(kept) != len(items):
                message = _replaced(message, field, kept)
        items = getattr(message, field)
        if tf.offset:
            offset = tf.offset
            for item in items:
                item.timestamp += offset
        if tf.channel_ids is not None and field == "row_data":
            channel_ids = tf.channel_ids
            for item in items:
                del item.channel_ids[:]
                item.channel_ids.extend(channel_ids)
        return message, bounds

    return transform


_FIELDS = {"periodic": "periodic_data", "timestamped": "timestamped_data", "row": "row_data", "events": "events"}
_ITEM_TIME = {
    "periodic": lambda item: item.start_timestamp,
    "timestamped": lambda item: _ts_bounds(item)[0],
    "row": lambda item: item.timestamp,
    "events": lambda item: item.timestamp,
}
_APPLY = {
    "periodic": _periodic,
    "timestamped": _timestamped,
    "row": _stamped("row_data"),
    "events": _stamped("events"),
}
ITEM_TYPES = {"periodic": data_pb2.PeriodicData, "timestamped": data_pb2.TimestampedData}  # items clipping may cut
_CUT = {"periodic": _clip_periodic, "timestamped": _clip_timestamped}
_ITEM_SPAN = {
    "periodic": lambda item: (item.start_timestamp, item.start_timestamp + (item.samples - 1) * item.interval),
    "timestamped": _ts_bounds,
}
