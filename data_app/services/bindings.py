"""Session data: the session's own data identity, or what its data bindings compose (spec §7).

A session without data bindings serves its own identity's chunks unchanged
(the fast path). A session with bindings serves only what they bind, each
binding (``sessions_app.models.DataBinding``, field meanings from the
``DataBinding`` proto) contributing the chunks of its data identity:

- **time offset**: ``session_time_offset`` is the offset of session time
  relative to data time, so a sample at data time ``t`` is served at
  ``t + offset``; request bounds (session time) are mapped back by
  subtracting it;
- **clipping**: only samples whose session time lies in
  ``[session_start_time, session_end_time]`` (inclusive; either bound may be
  absent, unbounded) are served;
- **channel re-mapping**: each channel binding maps session channels
  ``first_session_channel..last_session_channel`` onto data channels from
  ``first_data_channel`` upwards (session ``s`` ← data
  ``first_data_channel + s - first_session_channel``). Requests name session
  channels; data channels no channel binding maps are not served, and a
  binding without channel bindings serves no timestamped, periodic or row
  data, only events. A row data channel set is served when every channel of
  it is mapped (the first channel binding that covers a channel maps it), as
  its buffer cannot be cut without the channel types; its ids are re-mapped.

The binding key's ``source`` names where the data lives; this server holds
every identity itself and serves bindings whatever their source.

A chunk that needs none of this (offset 0, wholly inside the clip range,
channels mapped to themselves) is served as stored; any other is decoded,
transformed (``rta_kit.transforms``) and re-encoded, one served chunk per
stored chunk. Where two bindings feed one session channel (events: any two)
over intersecting time ranges, their chunks would overlap: that channel is
served as merged windows instead, aligned to the smallest chunk span of the
bound identities, each holding everything bound inside it. Either way what a
served chunk holds depends on the stored chunks and the bindings only, so
chunk boundaries stay stable whatever the request bounds. Chunks are ordered
by session channel, then time.
"""

from dataclasses import dataclass

from django.db.models import Min

from data_app.models import Chunk
from data_app.services.channels import MAX_CHANNEL, ChannelSet
from data_app.store import reader
from rta_core.access import Access
from rta_core.errors import NotFound, excerpt
from rta_core.identities import is_identity
from rta_kit.transforms import MERGE, ChunkTransform, Window

_ALL_CHANNELS = ChannelSet([(0, MAX_CHANNEL)])


@dataclass(frozen=True)
class ChannelMap:
    """Data channels ``data_low..data_high`` served as session channels ``data + delta``."""

    data_low: int
    data_high: int
    delta: int

    @classmethod
    def from_binding(cls, first_data_channel, first_session_channel, last_session_channel):
        high = min(first_data_channel + last_session_channel - first_session_channel, MAX_CHANNEL)
        return cls(first_data_channel, high, first_session_channel - first_data_channel)


@dataclass(frozen=True)
class Binding:
    identity: str
    start: int | None  # session time, inclusive
    end: int | None
    offset: int  # session time = data time + offset
    maps: tuple  # ChannelMaps, in first_session_channel order

    @classmethod
    def from_values(cls, identity, start, end, offset, channel_bindings):
        ordered = sorted(channel_bindings or [], key=lambda c: (c["first_session_channel"], c["last_session_channel"]))
        maps = tuple(
            ChannelMap.from_binding(c["first_data_channel"], c["first_session_channel"], c["last_session_channel"])
            for c in ordered
        )
        return cls(identity, start, end, offset or 0, maps)

    def channel_segments(self, channels):
        """``(data_low, data_high, delta)`` for the requested session channels this binding maps."""
        segments = []
        for m in self.maps:
            for low, high in channels.ranges:
                first, last = max(low, m.data_low + m.delta), min(high, m.data_high + m.delta)
                if first <= last:
                    segments.append((first - m.delta, last - m.delta, m.delta))
        return segments

    def session_set(self, data_channel_ids):
        """A row data channel set in session channels, or None if a channel is not mapped."""
        out = []
        for channel in data_channel_ids:
            m = next((m for m in self.maps if m.data_low <= channel <= m.data_high), None)
            if m is None:
                return None
            out.append(channel + m.delta)
        return out

    def covers(self, session_channel):
        return any(m.data_low + m.delta <= session_channel <= m.data_high + m.delta for m in self.maps)

    def transform(self, ref, session_ids):
        """What serving ``ref`` as ``session_ids`` (None: as stored) needs; None when nothing."""
        low = None if self.start is None or ref.start_time + self.offset >= self.start else self.start - self.offset
        high = None if self.end is None or ref.end_time + self.offset <= self.end else self.end - self.offset
        remap = session_ids is not None and list(session_ids) != list(ref.channel_ids)
        if not self.offset and low is None and high is None and not remap:
            return None
        return ChunkTransform(self.offset, low, high, tuple(session_ids) if remap else None)


def session_bindings(identity, access=Access.ANONYMOUS_FULL):
    """The session's bindings (empty when it has none); NotFound if there is no such session, or it is outside
    ``access``'s folders."""
    from sessions_app.services.scope import visible_sessions

    if not is_identity(identity):
        raise NotFound(f"session {excerpt(identity)} not found")  # no session has an invalid identity
    rows = list(
        visible_sessions(access)
        .filter(identity=identity)
        .order_by("data_bindings__id")
        .values_list(
            "data_bindings__identity",
            "data_bindings__session_start_time",
            "data_bindings__session_end_time",
            "data_bindings__session_time_offset",
            "data_bindings__channel_bindings",
        )
    )
    if not rows:
        raise NotFound(f"session {excerpt(identity)} not found")
    return [Binding.from_values(*row) for row in rows if row[0] is not None]


def read_session_data(identity, kind, channels=None, start=None, end=None, access=Access.ANONYMOUS_FULL):
    """A ``reader.ChunkStream`` of the session's ``kind`` data for session channels ``channels``.

    ``start``/``end`` are session times (ns, inclusive), rounded outwards to whole chunks.
    NotFound for a session ``access`` does not reach.
    """
    reader.check_request(kind, start, end)
    bindings = session_bindings(identity, access)
    if not bindings:
        return reader.open_identity(identity, kind, channels, start, end)
    identities = {b.identity for b in bindings}
    return reader.open_stream(kind, identities, lambda: plan(bindings, kind, channels, start, end))


def _intersect(start, end, low, high):
    first = low if start is None else start if low is None else max(start, low)
    last = high if end is None else end if high is None else min(end, high)
    return first, last


def _empty(first, last):
    return first is not None and last is not None and first > last


def _overlap(a, b):
    """Whether two bindings' session time ranges intersect."""
    return not _empty(*_intersect(a.start, a.end, b.start, b.end))


def _share_channels(kind, a, b):
    if kind == "events":
        return True
    return any(
        ma.data_low + ma.delta <= mb.data_high + mb.delta and mb.data_low + mb.delta <= ma.data_high + ma.delta
        for ma in a.maps
        for mb in b.maps
    )


def _feeders(kind, key, bindings):
    """Indexes of the bindings that can serve the session channel key (events: all)."""
    if kind == "events":
        return list(range(len(bindings)))
    return [i for i, b in enumerate(bindings) if all(b.covers(channel) for channel in key)]


def _window_span(kind, bindings):
    found = Chunk.objects.filter(identity__in={b.identity for b in bindings}, kind=kind).aggregate(span=Min("span"))
    return found["span"] or 1_000_000_000


def plan(bindings, kind, channels, start, end):
    """``(item, transform)`` pairs for ``reader.open_stream``, in serving order.

    Bindings that may feed merged windows are queried with the request widened
    to whole windows, so each window served is complete; chunks they give to
    channels served chunk by chunk are then held to the request as given.
    """
    channels = _ALL_CHANNELS if channels is None else channels
    merging = {
        i
        for i, a in enumerate(bindings)
        for j, b in enumerate(bindings)
        if i != j and _overlap(a, b) and _share_channels(kind, a, b)
    }
    span = _window_span(kind, [bindings[i] for i in merging]) if merging else None
    by_key = {}
    for i, binding in enumerate(bindings):
        q_start, q_end = start, end
        if i in merging:
            q_start = None if start is None else start // span * span
            q_end = None if end is None else end // span * span + span - 1
        first, last = _intersect(q_start, q_end, binding.start, binding.end)
        if _empty(first, last):
            continue
        data_first = None if first is None else first - binding.offset
        data_last = None if last is None else last - binding.offset
        for ref, session_ids in _bound_refs(binding, kind, channels, data_first, data_last):
            by_key.setdefault(tuple(session_ids or ()), []).append((i, ref, session_ids))
    planned = []
    for key, entries in by_key.items():
        feeders = _feeders(kind, key, bindings)
        if any(_overlap(bindings[i], bindings[j]) for i in feeders for j in feeders if i < j):
            planned += _windows(kind, key, entries, bindings, span, start, end)
            continue
        for i, ref, session_ids in entries:
            binding = bindings[i]
            if i in merging and not _selected(ref, binding, start, end):
                continue  # fetched only because the request was widened
            order = ref.start_time + binding.offset
            if binding.start is not None:
                order = max(order, binding.start)
            planned.append(((key, order), ref, binding.transform(ref, session_ids)))
    planned.sort(key=lambda p: p[0])
    return [(item, transform) for _, item, transform in planned]


def _selected(ref, binding, start, end):
    first, last = _intersect(start, end, binding.start, binding.end)
    if _empty(first, last):
        return False
    return (first is None or ref.end_time + binding.offset >= first) and (
        last is None or ref.start_time + binding.offset <= last
    )


def _windows(kind, key, entries, bindings, span, start, end):
    """Merged windows of one session channel key that overlap the request."""
    parts = {}
    for i, ref, session_ids in entries:
        binding = bindings[i]
        lo, hi = _intersect(ref.start_time + binding.offset, ref.end_time + binding.offset, binding.start, binding.end)
        if _empty(lo, hi):
            continue
        for k in range(lo // span, hi // span + 1):
            w_start, w_end = k * span, k * span + span - 1
            if (start is not None and w_end < start) or (end is not None and w_start > end):
                continue
            c_lo, c_hi = _intersect(w_start, w_end, binding.start, binding.end)
            remap = session_ids is not None and list(session_ids) != list(ref.channel_ids)
            transform = ChunkTransform(
                binding.offset, c_lo - binding.offset, c_hi - binding.offset, tuple(session_ids) if remap else None
            )
            parts.setdefault(k, []).append(((i, ref.start_time), ref, transform))
    out = []
    for k, found in parts.items():
        found.sort(key=lambda p: p[0])
        window = Window(k * span, k * span + span - 1, key, tuple((ref, transform) for _, ref, transform in found))
        out.append(((key, k * span), window, MERGE))
    return out


def _bound_refs(binding, kind, channels, data_first, data_last):
    """``(ChunkRef, session channel ids or None)`` this binding contributes."""
    if kind == "events":
        for ref in reader.find_chunks(binding.identity, kind, None, data_first, data_last):
            yield ref, None
        return
    if not binding.maps:
        return  # no channel bindings: channel data is not bound
    if kind == "row":
        for ref in reader.find_chunks(binding.identity, kind, None, data_first, data_last):
            session_ids = binding.session_set(ref.channel_ids)
            if session_ids is not None and channels.matches_any(session_ids):
                yield ref, session_ids
        return
    segments = binding.channel_segments(channels)
    if not segments:
        return
    data_channels = ChannelSet([(low, high) for low, high, _ in segments])
    for ref in reader.find_chunks(binding.identity, kind, data_channels, data_first, data_last):
        for low, high, delta in segments:
            if low <= ref.channel <= high:
                yield ref, [ref.channel + delta]
