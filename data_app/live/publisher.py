"""Writer side of the buffer: items of live sessions, batched into bursts and published.

Every ``DataSink`` has a ``LiveTap``. While the sink's session is live the tap
encodes each item once as a ``StreamDataBurst`` record and hands it to the
process's ``Publisher``, a thread that gathers records per session and
publishes a burst (one LZ4 frame) when it reaches RTA_STREAM_BURST_BYTES
(64 KiB), when the writer has added nothing for RTA_STREAM_WRITER_IDLE_MS
(it has sent what it had: a tick of many channels goes out as one burst), or
at the latest when its oldest record has waited RTA_STREAM_WRITER_LINGER_MS
(a writer trickling items without pause). A burst is thus large when data is
dense and late by about a millisecond when it comes in spurts. One thread publishes everything, so bursts of a session reach the
stream in the order their items were added. The buffer being slow or down
never blocks or fails a writer: what cannot be published is dropped (and
logged), the chunk store still gets everything.
"""

import atexit
import logging
import threading
import time

from django.conf import settings

from data_app.live import bursts, container, logs, process_wide, sessions
from data_app.live.buffers import get_buffer

log = logging.getLogger(__name__)


class _Batch:
    __slots__ = ("records", "size", "start", "end", "since", "last")

    def __init__(self):
        self.records, self.size, self.start, self.end = [], 0, None, None
        self.since = self.last = time.monotonic()

    def add(self, record, start, end):
        self.last = time.monotonic()
        self.records.append(record)
        self.size += len(record)
        self.start = start if self.start is None else min(self.start, start)
        self.end = end if self.end is None else max(self.end, end)


class Publisher:
    """Publishes the batched records of every live session of this process (one thread)."""

    def __init__(self, batch_bytes=None, linger=None, idle=None, max_pending_bytes=None):
        self.batch_bytes = batch_bytes or settings.RTA_STREAM_BURST_BYTES
        self.linger = (settings.RTA_STREAM_WRITER_LINGER_MS if linger is None else linger) / 1000
        self.idle = (settings.RTA_STREAM_WRITER_IDLE_MS if idle is None else idle) / 1000
        self.max_pending_bytes = max_pending_bytes or settings.RTA_STREAM_WRITER_MAX_PENDING_BYTES
        self._cond = threading.Condition()
        self._open = {}  # identity -> batch being filled
        self._sealed = []  # (identity, batch) full batches, in order
        self._pending = 0
        self._queued = 0  # sequence of the last batch queued ...
        self._done = 0  # ... and of the last one published (or dropped)
        self._sessions = {}  # identity -> (stream session id, stream name)
        self._thread = None

    # --- called by writers (any thread) --------------------------------------------------------

    def add(self, identity, record, start, end):
        if len(record) > container.MAX_BURST_BYTES:
            log.warning("live item of %d bytes for %r exceeds a burst; not streamed", len(record), identity)
            return
        with self._cond:
            if self._pending + len(record) > self.max_pending_bytes:
                self._log_drop(identity)
                return
            batch = self._open.get(identity)
            if batch is not None and batch.size + len(record) > self.batch_bytes:
                self._seal(identity)
                batch = None
            if batch is None:
                batch = self._open[identity] = _Batch()
                if len(self._open) == 1 and not self._sealed:
                    self._cond.notify()
            batch.add(record, start, end)
            self._pending += len(record)
            if batch.size >= self.batch_bytes:
                self._seal(identity)
                self._cond.notify()
        self._ensure_thread()

    def flush(self, identity, timeout=5.0):
        """Publish what ``identity`` has batched now; returns once it is in the buffer (or dropped)."""
        with self._cond:
            if identity in self._open:
                self._seal(identity)
            target = self._queued
            if self._done >= target:
                return True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def _seal(self, identity):
        self._sealed.append((identity, self._open.pop(identity)))
        self._queued += 1

    def _log_drop(self, identity):
        logs.every(
            log,
            "drop",
            10,
            logging.WARNING,
            "live buffer is not keeping up: dropping live items (of %r and maybe others)",
            identity,
        )

    # --- the publishing thread --------------------------------------------------------------

    def _ensure_thread(self):
        if self._thread is None or not self._thread.is_alive():
            with self._cond:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="rta-live-publisher", daemon=True)
                    self._thread.start()

    def _due(self):
        """Seal batches whose writer paused or whose linger has passed; seconds until the next is due (or None)."""
        now, wait = time.monotonic(), None
        for identity, batch in list(self._open.items()):
            left = min(batch.last + self.idle, batch.since + self.linger) - now
            if left <= 0:
                self._seal(identity)
            else:
                wait = left if wait is None else min(wait, left)
        return wait

    def _run(self):
        while True:
            with self._cond:
                wait = self._due()
                while not self._sealed:
                    self._cond.wait(wait if wait is not None else 1.0)
                    wait = self._due()
                work, self._sealed = self._sealed, []
            for identity, batch in work:
                self._publish(identity, batch)
                with self._cond:
                    self._pending -= batch.size
                    self._done += 1
                    self._cond.notify_all()

    def _publish(self, identity, batch):
        try:
            data = container.compress(bursts.burst(batch.records))
            buffer = get_buffer()
            for _attempt in range(2):
                known = self._sessions.get(identity)
                if known is None:
                    sid, name, _position = buffer.open_session(identity)
                    known = self._sessions[identity] = (sid, name)
                if buffer.publish(identity, known[0], known[1], data, batch.start, batch.end) is not None:
                    return
                # The directory entry expired or was replaced: open it again and retry once.
                self._sessions.pop(identity, None)
            logs.every(
                log,
                "vanishing",
                10,
                logging.WARNING,
                "could not publish a live burst of %r: its directory entry keeps vanishing",
                identity,
            )
        except Exception:  # never let the buffer take the writer down
            self._sessions.pop(identity, None)
            logs.every(
                log, "publish", 10, logging.ERROR, "could not publish a live burst of %r", identity, exc_info=True
            )

    def close(self):
        """Publish everything batched (at exit)."""
        with self._cond:
            identities = list(self._open)
        for identity in identities:
            self.flush(identity, timeout=2.0)


def _new_publisher():
    publisher = Publisher()
    atexit.register(publisher.close)
    return publisher


get_publisher = process_wide(_new_publisher)


# Samples per live item of array writes (ingest): within the 10,000 an item may hold, and large
# enough that per-item work stays small next to the samples (stored items are re-cut to 128).
LIVE_ITEM_SAMPLES = 1024


class LiveTap:
    """The live half of one ``DataSink``: forwards its items while the session is live."""

    def __init__(self, identity):
        self.identity = identity
        self._was_live = False

    def _live(self):
        live = sessions.is_live(self.identity)
        if live and not self._was_live:
            # First live item of this sink: make sure the directory entry exists and carries the JSON.
            sessions.refresh(self.identity)
        self._was_live = live
        return live

    def add(self, kind, item, first, last):
        """Publish one validated item (samples from ``first`` to ``last``) if the session is live."""
        if self._live():
            get_publisher().add(self.identity, bursts.item_record(kind, item), first, last)

    def add_timestamped_run(self, channel, run):
        """Publish a ``TimestampedRun`` as items of up to ``LIVE_ITEM_SAMPLES`` if the session is live."""
        if not self._live():
            return
        publisher = get_publisher()
        for body, first, last in run.item_bodies(channel, LIVE_ITEM_SAMPLES):
            publisher.add(self.identity, bursts.record(bursts.TIMESTAMPED, body), first, last)

    def flush(self):
        """Publish what is batched now (a writer's flush: its data should reach live clients too)."""
        if self._was_live:
            get_publisher().flush(self.identity)
