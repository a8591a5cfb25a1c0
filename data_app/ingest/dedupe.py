"""Idempotent data ingest: a sample is stored once per (channel, timestamp), whatever is replayed.

Kafka delivers at least once (offsets are committed after the data is
flushed, so a crash between the two replays it), topics get replayed from the
beginning, and a recorded file may be ingested twice. The chunk store merges
late data into existing chunks without deduplicating, so the ingest decides
what is new before adding it, from what is stored:

- Per (kind, channel) of a session, the *watermark* is the time of the
  latest sample known to be stored or buffered: loaded from the chunk index
  (``max(end_time)``) when the ingest first meets the session, and advanced
  as samples are added.
- Samples after the watermark are new: the fast path, a single comparison
  for a whole batch (telemetry arrives in time order, so this is every batch
  of a first ingest).
- Samples at or before it are checked one by one against what is stored:
  the session's buffered data is flushed first, then the stored timestamps
  of the chunks they fall in are read (cached while the channel is not
  written) and only samples at timestamps not already stored are kept. A
  replay therefore adds nothing, and late data that was never stored (a
  genuine out-of-order sample, or data that was buffered but lost in a crash)
  is still added.

The key is the timestamp alone: two different values for one channel at one
instant are the same sample sent twice, and the first one stored wins. Events
are keyed by (timestamp, event definition id). Compared with skipping by
Kafka offset, this needs no state beyond the data itself, so it holds across
consumer groups, recreated topics, file replays of a topic and restarts
at any point.
"""

from collections import OrderedDict

import numpy as np
from django.db.models import Max

from data_app.models import Chunk
from data_app.store.reader import ChunkRef, decoded_lists

_REF_FIELDS = (
    "channel_ids",
    "start_time",
    "end_time",
    "file",
    "offset",
    "packed_length",
    "unpacked_length",
    "compression",
)
CACHE_SAMPLES = 4_000_000


class Watermarks:
    """The watermarks and stored-timestamp cache of one session identity."""

    def __init__(self, identity):
        self.identity = identity
        self.marks = {
            (row["kind"], row["channel"]): row["end"]
            for row in Chunk.objects.filter(identity=identity).values("kind", "channel").annotate(end=Max("end_time"))
        }
        self._cache = OrderedDict()  # (kind, channel, chunk id) -> sorted keys
        self._cached_samples = 0

    def get(self, kind, channel):
        return self.marks.get((kind, channel))

    def advance(self, kind, channel, time):
        key = (kind, channel)
        if self.marks.get(key) is None or time > self.marks[key]:
            self.marks[key] = time

    def forget(self, kind, channel):
        """Drop cached stored timestamps of a channel (its chunks were rewritten)."""
        for key in [k for k in self._cache if k[0] == kind and k[1] == channel]:
            self._cached_samples -= len(self._cache.pop(key))

    def stored_times(self, channel, start, end):
        """Stored timestamps (int64[], sorted) of a timestamped channel in the chunks overlapping [start, end]."""
        parts = self._stored("timestamped", channel, start, end, _timestamped_keys)
        if not parts:
            return np.empty(0, np.int64)
        return np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0]

    def stored_events(self, start, end):
        """Stored (timestamp, event definition id) pairs in the event chunks overlapping [start, end]."""
        return set().union(*self._stored("events", 0, start, end, _event_keys))

    def _stored(self, kind, channel, start, end, keys_of):
        rows = Chunk.objects.filter(
            identity=self.identity, kind=kind, channel=channel, end_time__gte=start, start_time__lte=end
        )
        parts = []
        for row in rows.values("id", *_REF_FIELDS):
            key = (kind, channel, row.pop("id"))
            cached = self._cache.get(key)
            if cached is None:
                cached = keys_of(next(iter(decoded_lists(kind, [ChunkRef(**row)]))))
                self._cache[key] = cached
                self._cached_samples += len(cached)
                while self._cached_samples > CACHE_SAMPLES and len(self._cache) > 1:
                    self._cached_samples -= len(self._cache.popitem(last=False)[1])
            else:
                self._cache.move_to_end(key)
            parts.append(cached)
        return parts


def item_times(item):
    """Sample times of a TimestampedData item: start + scale x cumulative sum of the deltas."""
    deltas = np.array(item.timestamp_deltas, dtype=np.int64)
    return item.start_timestamp + (item.timestamp_deltas_scale or 1) * np.cumsum(deltas)


def _timestamped_keys(message):
    out = [item_times(item) for item in message.timestamped_data]
    return np.sort(np.concatenate(out)) if out else np.empty(0, np.int64)


def _event_keys(message):
    return frozenset((e.timestamp, e.event_definition_id) for e in message.events)


def new_mask(stored, candidates):
    """Boolean mask of ``candidates`` not in sorted ``stored``."""
    if not len(stored):
        return np.ones(len(candidates), dtype=bool)
    return ~np.isin(candidates, stored, assume_unique=False)
