"""The in-process live buffer, for the embedded single-process server (no ``RTA_REDIS_URL``).

It keeps the same streams, ids and directory as the Redis back end in this
process's memory.
"""

import asyncio
import bisect
import threading
import time

from data_app.live import keys
from data_app.live.buffers.base import Directory, Entry, format_id, int_or_none, now_ms, parse_id, session_ttl_ms


class MemoryBuffer:
    """The buffer kept in this process (no Redis): same ids, directory and semantics."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last_session_id = 0
        self._streams = {}  # name -> ([parsed ids], [Entry])
        self._last_ids = {}  # name -> last parsed id ever added (ids never go back, even after trimming)
        self._sessions = {}  # identity -> (fields dict, expires at monotonic)
        self._waiters = {}  # name -> {(loop, future)}

    # --- directory (caller holds the lock) -------------------------------------------------

    def _entry(self, identity):
        found = self._sessions.get(identity)
        if found is None:
            return None
        fields, expires = found
        if expires <= time.monotonic():
            del self._sessions[identity]
            return None
        return fields

    def _touch(self, identity, fields):
        self._sessions[identity] = (fields, time.monotonic() + session_ttl_ms() / 1000)

    def _allocate(self, identity, name):
        # New sessions are rare: a good moment to forget expired entries.
        now = time.monotonic()
        for expired in [i for i, (_, expires) in self._sessions.items() if expires <= now]:
            del self._sessions[expired]
        self._last_session_id += 1
        ids, _ = self._streams.get(name, ([], []))
        position = format_id(ids[-1]) if ids else keys.NEW_STREAM_POSITION
        fields = {
            keys.F_SESSION_ID: str(self._last_session_id),
            keys.F_NAME: name,
            keys.F_POSITION: position,
            keys.F_UPDATED: str(now_ms()),
        }
        self._streams.setdefault(name, ([], []))
        return fields

    @staticmethod
    def _widen(fields, start, end):
        if start is None:
            return
        old_start, old_end = int_or_none(fields.get(keys.F_START)), int_or_none(fields.get(keys.F_END))
        if old_start is not None and old_end is not None:
            start, end = min(start, old_start), max(end, old_end)
        fields[keys.F_START], fields[keys.F_END] = str(start), str(end)

    # --- writer side -----------------------------------------------------------------------

    def open_session(self, identity, stream_name=None):
        with self._lock:
            fields = self._entry(identity)
            if fields is None:
                fields = self._allocate(identity, stream_name or keys.stream_name_for(identity))
            self._touch(identity, fields)
            return fields[keys.F_SESSION_ID], fields[keys.F_NAME], fields[keys.F_POSITION]

    def publish(self, identity, session_id, name, data, t_start=None, t_end=None):
        with self._lock:
            fields = self._entry(identity)
            if fields is None or fields.get(keys.F_SESSION_ID) != session_id:
                return None
            ids, entries = self._streams.setdefault(name, ([], []))
            ms = now_ms()
            last = self._last_ids.get(name, (0, -1))
            new = (ms, 0) if ms > last[0] else (last[0], last[1] + 1)
            entry = Entry(format_id(new), session_id, bytes(data))
            ids.append(new)
            entries.append(entry)
            self._last_ids[name] = new
            self._widen(fields, t_start, t_end)
            fields[keys.F_UPDATED] = str(ms)
            self._touch(identity, fields)
            waiters = self._waiters.pop(name, set())
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that reader's event loop is closed: nobody to wake
                pass
        return entry.id

    def update_session(self, identity, json_text, t_start=None, t_end=None, live=True):
        with self._lock:
            fields = self._entry(identity)
            created = fields is None
            if created:
                if not live:
                    return False
                fields = self._allocate(identity, keys.stream_name_for(identity))
            changed = created or fields.get(keys.F_JSON) != json_text
            fields[keys.F_JSON] = json_text
            self._widen(fields, t_start, t_end)
            fields[keys.F_UPDATED] = str(now_ms())
            self._touch(identity, fields)
            return changed

    def has_session(self, identity):
        with self._lock:
            return self._entry(identity) is not None

    def delete_session(self, identity):
        with self._lock:
            self._sessions.pop(identity, None)

    def get_session(self, identity):
        with self._lock:
            fields = self._entry(identity)
            return Directory.from_hash(dict(fields)) if fields else None

    # --- reader side -----------------------------------------------------------------------

    async def aget_session(self, identity):
        return self.get_session(identity)

    async def alast_id(self, name):
        with self._lock:
            ids, _ = self._streams.get(name, ([], []))
            return format_id(ids[-1]) if ids else None

    def _range(self, name, after, upto, count):
        ids, entries = self._streams.get(name, ([], []))
        lo = bisect.bisect_right(ids, parse_id(after)) if after else 0
        hi = bisect.bisect_right(ids, parse_id(upto)) if upto else len(ids)
        return entries[lo : min(hi, lo + count)]

    async def aread_range(self, name, after, upto, count=100):
        """Entries with ``after < id <= upto`` (oldest first, at most ``count``)."""
        with self._lock:
            return self._range(name, after, upto, count)

    async def aread_new(self, name, after, block_ms=100, count=1000):
        """Entries after ``after``, waiting up to ``block_ms`` for one to arrive."""
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._range(name, after, None, count)
            if found or not block_ms:
                return found
            future = loop.create_future()
            self._waiters.setdefault(name, set()).add((loop, future))
        try:
            await asyncio.wait_for(future, block_ms / 1000)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.get(name, set()).discard((loop, future))
        with self._lock:
            return self._range(name, after, None, count)

    # --- trimmer ---------------------------------------------------------------------------

    def stream_names(self):
        with self._lock:
            return list(self._streams)

    def trim(self, name, max_length, stale_before_ms):
        """Trim to ``max_length`` entries, or drop the stream when its newest entry is stale (-1)."""
        with self._lock:
            ids, entries = self._streams.get(name, ([], []))
            if ids and ids[-1][0] < stale_before_ms:
                del self._streams[name]
                return -1
            excess = len(ids) - max_length
            if excess <= 0:
                return 0
            del ids[:excess], entries[:excess]
            return excess

    def close(self):
        pass


def _wake(future):
    if not future.done():
        future.set_result(None)
