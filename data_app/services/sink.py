"""The one entry point for writing session data, whoever the writer is.

gRPC ``DataWriter``, the Advanced Streams ingest and ``load_demo`` all write
through a ``DataSink``: it buffers into the chunk store (``ChunkWriter``) and,
while the session is live (waiting or open), publishes every item to the live
buffer (``data_app.live``) for WebSocket clients, so every writer gets both
without repeating the rule. Stored data extends the session's time range.
"""

import numpy as np

from data_app.live.publisher import LiveTap
from data_app.store.writer import ChunkWriter
from rta_core.identities import validate_identity
from rta_kit import items as it
from rta_kit.timestamped import TimestampedRun
from sessions_app.models import Session
from sessions_app.services.updates import create_or_update_session


class DataSink:
    """Items for one data identity: ``add`` buffers, ``flush`` makes durable, ``discard`` drops."""

    def __init__(self, identity, **writer_options):
        self.identity = validate_identity(identity, "data identity")  # before anything is buffered or stored
        self.store = ChunkWriter(identity, on_stored=self._extend_session, **writer_options)
        self.live = LiveTap(identity)

    def _extend_session(self, start, end):
        """Stored data widens its session's time range (when a session of that identity exists)."""
        if Session.objects.filter(identity=self.identity).exists():
            create_or_update_session(self.identity, [("extend_time_range", (start, end))])

    def add(self, kind, item):
        """Validate and buffer one item (``InvalidArgument`` leaves nothing buffered).

        A valid item of a live session is also on its way to live clients (within a
        few ms), before it is durable.
        """
        if kind in ("periodic", "timestamped"):
            run = it.run_of(kind, item)  # validated once; its first and last times serve live too
            self.store.add_run(kind, item.channel_id, run)
            self.live.add(kind, item, run.start, run.end)
        else:
            self.store.add(kind, item)
            self.live.add(kind, item, item.timestamp, item.timestamp)

    def add_timestamped(self, channel, times, values, timing=None):
        """Buffer sorted int64 ``times`` and their float64 ``values`` of one channel (numpy arrays).

        The array path for writers that hold samples rather than items (ingest):
        no protobuf item is built for the store, and live clients get items of
        ``LIVE_ITEM_SAMPLES``. ``timing`` is ``TimestampedRun.timing(times)``
        when the caller has it (channels sampled together share it). Raises
        InvalidArgument (times out of order, lengths differing) with nothing buffered.
        """
        what = f"timestamped data for channel {channel:x}"
        data = np.ascontiguousarray(values, dtype="<f8").tobytes()
        run = TimestampedRun.from_timing(timing or TimestampedRun.timing(times, what), data, 8, what)
        self.store.add_run("timestamped", channel, run)
        self.live.add_timestamped_run(channel, run)

    def flush(self):
        """Returns once everything added so far is fsynced, indexed and readable (and published live)."""
        self.live.flush()
        return self.store.flush()

    def start_flush(self):
        """Publish what is batched for live clients and start making the rest durable in the background."""
        self.live.flush()
        self.store.flush_in_background()

    @property
    def flushing(self):
        return self.store.flushing

    def wait(self):
        """Returns once the flush ``start_flush`` began is durable (raises its error)."""
        self.store.wait()

    def discard(self):
        """Drop what is buffered for the store (live clients may already have seen those items)."""
        self.store.discard()

    @property
    def buffered_bytes(self):
        return self.store.buffered_bytes
