"""Keeping the buffer bounded (spec §9): trim every stream to a target length, drop dead streams.

Every RTA_STREAM_TRIM_INTERVAL seconds each stream named in ``streams`` is
trimmed to its newest RTA_STREAM_TRIM_LENGTH entries (exact XTRIM MAXLEN). A
stream whose newest entry is older than RTA_STREAM_SESSION_TTL (every
directory entry pointing at it has expired by then) is deleted, and a name
whose stream no longer exists leaves ``streams``. Several processes may trim
the same buffer: every step is idempotent.
"""

import logging
import threading
from dataclasses import dataclass, field

from django.conf import settings

from data_app.live.buffers import get_buffer, now_ms

log = logging.getLogger(__name__)


@dataclass
class TrimReport:
    streams: int = 0
    trimmed_entries: int = 0
    dropped_streams: list = field(default_factory=list)


def trim_streams(buffer=None, max_length=None, max_age_ms=None, progress=None):
    """One trimming pass; ``progress(name)`` is called per stream. Returns a ``TrimReport``."""
    buffer = buffer or get_buffer()
    max_length = settings.RTA_STREAM_TRIM_LENGTH if max_length is None else max_length
    max_age_ms = int(settings.RTA_STREAM_SESSION_TTL * 1000) if max_age_ms is None else max_age_ms
    report = TrimReport()
    for name in buffer.stream_names():
        report.streams += 1
        trimmed = buffer.trim(name, max_length, now_ms() - max_age_ms)
        if trimmed < 0:
            report.dropped_streams.append(name)
        else:
            report.trimmed_entries += trimmed
        if progress is not None:
            progress(name)
    return report


class TrimmerThread(threading.Thread):
    """Runs ``trim_streams`` every ``interval`` seconds until ``stop()``."""

    def __init__(self, interval=None, max_length=None):
        super().__init__(name="rta-stream-trimmer", daemon=True)
        self.interval = settings.RTA_STREAM_TRIM_INTERVAL if interval is None else interval
        self.max_length = max_length
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.wait(self.interval):
            try:
                report = trim_streams(max_length=self.max_length)
                if report.trimmed_entries or report.dropped_streams:
                    log.info(
                        "trimmed %d entries from %d streams, dropped %d stale streams",
                        report.trimmed_entries,
                        report.streams,
                        len(report.dropped_streams),
                    )
            except Exception:  # keep trimming later; the buffer may be back by then
                log.exception("trimming the live buffer failed")

    def stop(self):
        self._stop_event.set()
