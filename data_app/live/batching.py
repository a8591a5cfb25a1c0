"""Outgoing bursts: gather payload pieces, emit compressed bursts of ~64 KiB without adding latency.

A ``Batcher`` emits when the gathered pieces reach the target size, and
otherwise at most one burst per ``delay``: a piece arriving after a quiet
spell goes out on the next turn of the event loop (pieces of that turn ride
along), pieces arriving right after a burst wait until ``delay`` has passed
since it. Dense data therefore goes out in full bursts, sparse data at once,
and a client never receives more than one small burst per ``delay``.

``delay`` may be a callable, read at each decision: the hub stretches it when
many clients share the process, so that the sends of small bursts stay
within what one process can do (RTA_STREAM_MAX_SENDS_PER_SECOND).
"""

import asyncio

from data_app.live import container


class Batcher:
    def __init__(self, emit, target_bytes, delay):
        self.emit = emit  # called with each compressed burst
        self.target_bytes = target_bytes
        self._delay = delay if callable(delay) else (lambda: delay)  # seconds
        self._parts, self._size = [], 0
        self._handle = None
        self._last_emit = float("-inf")
        self._loop = asyncio.get_running_loop()

    @property
    def size(self):
        return self._size

    def add(self, piece):
        if self._parts and self._size + len(piece) > self.target_bytes:
            self.flush()
        self._parts.append(piece)
        self._size += len(piece)
        if self._size >= self.target_bytes:
            self.flush()
        elif self._handle is None:
            wait = self._last_emit + self._delay() - self._loop.time()
            if wait <= 0:
                self._handle = self._loop.call_soon(self.flush)
            else:
                self._handle = self._loop.call_later(wait, self.flush)

    def flush(self):
        """Emit what is gathered now."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._parts:
            return
        payload = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts, self._size = [], 0
        self._last_emit = self._loop.time()
        self.emit(container.compress(payload))

    def clear(self):
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._parts, self._size = [], 0
