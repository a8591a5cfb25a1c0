"""Session data: the session's own data identity, or what its data bindings compose (spec §7, §13).

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
  channels; data channels no channel binding maps are not served. A row data
  channel set is served when every channel of it is mapped (the first channel
  binding that covers a channel maps it), as its buffer cannot be cut without
  the channel types; its ids are re-mapped.

Bindings without channel bindings (§13): when *none* of a session's bindings
has channel bindings, each passes every channel through 1:1 (offset and
clipping still apply), as the public examples and tutorials bind; once *any*
binding of the session has channel bindings, a binding without them
contributes events only (the proto comment's "not bound").

The binding key's ``source`` names where the data lives: a source configured
in ``RTA_DATA_SERVICES`` is read from that data service over HTTP
(``data_app.services.gateway``), any other from this server's store. The
rules here apply to both alike (``Composition``).

A chunk that needs none of this (offset 0, wholly inside the clip range,
channels mapped to themselves) is served as stored; any other is decoded,
transformed (``rta_kit.transforms``) and re-encoded, one served chunk per
stored chunk. Where two bindings feed one session channel (events: any two)
over intersecting time ranges, their chunks would overlap: that channel is
served as merged windows instead, aligned to the smallest chunk span of the
bound local identities (one second when only remote ones merge), each
holding everything bound inside it. Either way what a served chunk holds
depends on the stored chunks and the bindings only, so chunk boundaries stay
stable whatever the request bounds. Chunks are ordered by session channel,
then time.
"""

from dataclasses import dataclass, replace

from django.db.models import Min

from data_app.models import Chunk
from data_app.services.channels import MAX_CHANNEL, ChannelSet
from data_app.store import reader
from rta_core.access import Access
from rta_core.errors import NotFound, excerpt
from rta_core.identities import is_identity
from rta_kit.transforms import MERGE, ChunkTransform, Window

_ALL_CHANNELS = ChannelSet([(0, MAX_CHANNEL)])
# Merged windows' span when no local identity of the merging bindings has chunks to take it from.
DEFAULT_WINDOW_SPAN = 1_000_000_000


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


PASS_THROUGH = ChannelMap(0, MAX_CHANNEL, 0)  # every channel as itself


@dataclass(frozen=True)
class Binding:
    identity: str
    start: int | None  # session time, inclusive
    end: int | None
    offset: int  # session time = data time + offset
    maps: tuple  # ChannelMaps, in first_session_channel order
    source: str = ""

    @classmethod
    def from_values(cls, identity, start, end, offset, channel_bindings, source=""):
        ordered = sorted(channel_bindings or [], key=lambda c: (c["first_session_channel"], c["last_session_channel"]))
        maps = tuple(
            ChannelMap.from_binding(c["first_data_channel"], c["first_session_channel"], c["last_session_channel"])
            for c in ordered
        )
        return cls(identity, start, end, offset or 0, maps, source or "")

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


def apply_binding_rule(bindings):
    """§13: with no channel bindings anywhere in the session, every binding passes every channel 1:1."""
    if any(b.maps for b in bindings):
        return bindings  # those without channel bindings contribute events only
    return [replace(b, maps=(PASS_THROUGH,)) for b in bindings]


def session_bindings(identity, access=Access.ANONYMOUS_FULL):
    """The session's bindings (empty when it has none), the binding rule applied; NotFound if there is no such
    session, or it is outside ``access``'s folders."""
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
            "data_bindings__source",
        )
    )
    if not rows:
        raise NotFound(f"session {excerpt(identity)} not found")
    return apply_binding_rule([Binding.from_values(*row) for row in rows if row[0] is not None])


def read_session_data(identity, kind, channels=None, start=None, end=None, access=Access.ANONYMOUS_FULL):
    """A ``reader.ChunkStream`` of the session's ``kind`` data for session channels ``channels``, every binding
    read from this server's store (``gateway.open_session_data`` reads remote sources too).

    ``start``/``end`` are session times (ns, inclusive), rounded outwards to whole chunks.
    NotFound for a session ``access`` does not reach.
    """
    reader.check_request(kind, start, end)
    return read_bound(identity, session_bindings(identity, access), kind, channels, start, end)


def read_bound(identity, bindings, kind, channels=None, start=None, end=None):
    """``read_session_data`` for the session ``identity`` whose ``bindings`` are known."""
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


class Composition:
    """How a session's ``bindings`` serve one request, whatever their sources.

    ``remote`` are the indexes of the bindings read from data services: their
    identities are not in this server's index (the window span ignores them),
    and their chunks are routed one by one as they arrive (``routes``,
    ``windowed``, ``placed``) by the same rules as stored ones.
    """

    def __init__(self, bindings, kind, channels, start, end, remote=frozenset()):
        self.bindings, self.kind, self.start, self.end, self.remote = bindings, kind, start, end, remote
        self.channels = _ALL_CHANNELS if channels is None else channels
        self.merging = {
            i
            for i, a in enumerate(bindings)
            for j, b in enumerate(bindings)
            if i != j and _overlap(a, b) and _share_channels(kind, a, b)
        }
        self.span = self._window_span() if self.merging else None
        self._windowed = {}

    def _window_span(self):
        local = {self.bindings[i].identity for i in self.merging if i not in self.remote}
        if not local:
            return DEFAULT_WINDOW_SPAN
        found = Chunk.objects.filter(identity__in=local, kind=self.kind).aggregate(span=Min("span"))
        return found["span"] or DEFAULT_WINDOW_SPAN

    def data_bounds(self, i):
        """``(first, last)`` data times to read binding ``i`` over (either None: unbounded), or None for nothing.

        Bindings that may feed merged windows read the request widened to whole
        windows, so each window served is complete; chunks they give to channels
        served chunk by chunk are then held to the request as given (``placed``).
        """
        binding, start, end = self.bindings[i], self.start, self.end
        if i in self.merging:
            span = self.span
            start = None if start is None else start // span * span
            end = None if end is None else end // span * span + span - 1
        first, last = _intersect(start, end, binding.start, binding.end)
        if _empty(first, last):
            return None
        offset = binding.offset
        return None if first is None else first - offset, None if last is None else last - offset

    def segments(self, i):
        """``(data_low, data_high, delta)`` of the requested session channels binding ``i`` maps."""
        return self.bindings[i].channel_segments(self.channels)

    def serves_channels(self, i):
        """Whether binding ``i`` can serve any of the requested channels (events: always)."""
        return self.kind == "events" or bool(self.bindings[i].maps and self.segments(i))

    def routes(self, i, segments, ref):
        """The session channel ids (events: None) binding ``i`` serves chunk ``ref`` as, once per way."""
        kind = self.kind
        if kind == "events":
            return [None]
        if kind == "row":
            session_ids = self.bindings[i].session_set(ref.channel_ids)
            return [session_ids] if session_ids is not None and self.channels.matches_any(session_ids) else []
        channel = ref.channel
        return [[channel + delta] for low, high, delta in segments if low <= channel <= high]

    def windowed(self, key):
        """Whether session channel ``key`` is served as merged windows (two of its feeders overlap in time)."""
        if not self.merging:
            return False
        found = self._windowed.get(key)
        if found is None:
            feeders = _feeders(self.kind, key, self.bindings)
            bindings = self.bindings
            found = any(_overlap(bindings[i], bindings[j]) for i in feeders for j in feeders if i < j)
            self._windowed[key] = found
        return found

    def placed(self, i, ref, session_ids):
        """``((key, order), ref, transform)`` for a chunk served chunk by chunk; None when a widened read
        fetched it only for merged windows."""
        binding = self.bindings[i]
        if i in self.merging and not _selected(ref, binding, self.start, self.end):
            return None
        order = ref.start_time + binding.offset
        if binding.start is not None:
            order = max(order, binding.start)
        return (tuple(session_ids or ()), order), ref, binding.transform(ref, session_ids)

    def local_entries(self, indexes):
        """From this server's store, for bindings ``indexes``: ``{i: [placed chunk]}`` and the windowed
        session channel keys' ``{key: [(i, ChunkRef, session ids)]}``."""
        placed, windowed = {}, {}
        for i in indexes:
            bounds = self.data_bounds(i)
            if bounds is None or not self.serves_channels(i):
                continue
            segments = self.segments(i) if self.kind != "events" else None
            data_channels = None
            if self.kind in ("periodic", "timestamped"):
                data_channels = ChannelSet([(low, high) for low, high, _ in segments])
            for ref in reader.find_chunks(self.bindings[i].identity, self.kind, data_channels, *bounds):
                for session_ids in self.routes(i, segments, ref):
                    key = tuple(session_ids or ())
                    if self.windowed(key):
                        windowed.setdefault(key, []).append((i, ref, session_ids))
                    elif (item := self.placed(i, ref, session_ids)) is not None:
                        placed.setdefault(i, []).append(item)
        return placed, windowed

    def windows(self, key, entries):
        """Merged windows of one session channel key that overlap the request: ``((key, order), Window, MERGE)``."""
        return _windows(self.kind, key, entries, self.bindings, self.span, self.start, self.end)


def plan(bindings, kind, channels, start, end):
    """``(item, transform)`` pairs for ``reader.open_stream``, in serving order (every binding local)."""
    composition = Composition(bindings, kind, channels, start, end)
    placed, windowed = composition.local_entries(range(len(bindings)))
    planned = [item for items in placed.values() for item in items]
    for key, entries in windowed.items():
        planned += composition.windows(key, entries)
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
