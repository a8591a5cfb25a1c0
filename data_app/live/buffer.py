"""The live buffer: its interface, the in-process implementation and ``get_buffer()``.

Two implementations share one interface: ``RedisBuffer`` (``redis_buffer``,
the spec §9 protocol, used when ``RTA_REDIS_URL`` is set) and
``MemoryBuffer`` here, which keeps the same streams, ids and directory in
this process for the embedded single-process server. Writer-side calls are
synchronous (writers run in threads); reader-side calls are coroutines (the
WebSocket side runs on the ASGI event loop).

Writer side: ``open_session``, ``publish``, ``update_session``,
``has_session``. Reader side: ``aget_session``, ``alast_id``,
``aread_range``, ``aread_new``. Trimmer: ``stream_names``, ``trim``.
"""

import asyncio
import bisect
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from data_app.live import keys


def parse_id(entry_id):
    """A stream entry id ``"<ms>-<seq>"`` as a comparable tuple."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode("ascii")
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(parsed):
    return f"{parsed[0]}-{parsed[1]}"


def later_id(a, b):
    """The later of two entry ids (``None`` counts as earliest)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if parse_id(a) >= parse_id(b) else b


def _int_or_none(value):
    if value is None or value == "" or value == b"":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Directory:
    """One session's directory entry."""

    stream_session_id: str
    stream_name: str
    stream_position: str
    last_updated: int = None
    json: str = None
    t_start: int = None
    t_end: int = None

    @classmethod
    def from_hash(cls, fields):
        """From HGETALL-style fields (bytes or str); ``None`` when the required ones are missing."""
        fields = {_text(k): v for k, v in fields.items()}
        sid, name = fields.get(keys.F_SESSION_ID), fields.get(keys.F_NAME)
        if sid is None or name is None:
            return None
        position = _text(fields.get(keys.F_POSITION)) or keys.NEW_STREAM_POSITION
        try:
            parse_id(position)
        except ValueError:
            position = keys.NEW_STREAM_POSITION
        start, end = _int_or_none(fields.get(keys.F_START)), _int_or_none(fields.get(keys.F_END))
        if start is None or end is None:
            start = end = None
        return cls(
            _text(sid),
            _text(name),
            position,
            _int_or_none(fields.get(keys.F_UPDATED)),
            _text(fields.get(keys.F_JSON)),
            start,
            end,
        )

    @property
    def time_range(self):
        return None if self.t_start is None else (self.t_start, self.t_end)


@dataclass(frozen=True)
class Entry:
    """One stream entry: its id, the stream session id it belongs to and its (compressed) data."""

    id: str
    session_id: str
    data: bytes

    @classmethod
    def from_fields(cls, entry_id, fields):
        fields = {_text(k): v for k, v in fields.items()}
        return cls(_text(entry_id), _text(fields.get(keys.E_ID, b"")), fields.get(keys.E_DATA) or b"")


def now_ms():
    return time.time_ns() // 1_000_000


def session_ttl_ms():
    return int(settings.RTA_STREAM_SESSION_TTL * 1000)


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
        old_start, old_end = _int_or_none(fields.get(keys.F_START)), _int_or_none(fields.get(keys.F_END))
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


_memory = MemoryBuffer()
_redis = {}
_redis_lock = threading.Lock()


def get_buffer():
    """The buffer of this process: Redis when ``RTA_REDIS_URL`` is set, else the in-process one."""
    url = settings.RTA_REDIS_URL
    if not url:
        return _memory
    buffer = _redis.get(url)
    if buffer is None:
        from data_app.live.redis_buffer import RedisBuffer

        with _redis_lock:
            buffer = _redis.get(url)
            if buffer is None:
                buffer = _redis[url] = RedisBuffer(url)
    return buffer
