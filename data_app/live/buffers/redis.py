"""The Redis buffer (spec §9): streams, the ``streams`` set and the session directory.

Directory changes are Lua scripts so that concurrent writers (several
processes, third-party ingest) never lose each other's updates: allocating a
stream session id and its start position happens once per session, and
``tStart``/``tEnd`` only ever widen, compared as exact 64-bit integers (Lua
numbers are doubles, so the scripts compare the decimal strings).
"""

import threading
import weakref

import redis
import redis.asyncio

from data_app.live import keys
from data_app.live.buffers.base import Directory, Entry, now_ms, session_ttl_ms

_PRELUDE = """
local function less(a, b)  -- a < b for canonical decimal integer strings
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  return a < b
end

local function widen(key, s, e)
  if s == '' then return end
  local cs = redis.call('HGET', key, 'tStart')
  local ce = redis.call('HGET', key, 'tEnd')
  if cs and ce then
    if less(cs, s) then s = cs end
    if less(e, ce) then e = ce end
  end
  redis.call('HSET', key, 'tStart', s, 'tEnd', e)
end

-- KEYS: session, lastStreamSessionId, streams, stream:<name>; ARGV: name, now
local function allocate(name, now)
  local sid = redis.call('INCRBY', KEYS[2], 1)
  local position = '0-0'
  if redis.call('EXISTS', KEYS[4]) == 1 then
    local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
    if #last > 0 then position = last[1][1] end
  end
  redis.call('HSET', KEYS[1], 'streamSessionId', sid, 'streamName', name,
             'streamPosition', position, 'lastUpdated', now)
  redis.call('SADD', KEYS[3], name)
end
"""

# KEYS: session, lastStreamSessionId, streams, stream:<name>; ARGV: name, now, ttl
_OPEN = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then allocate(ARGV[1], ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'streamSessionId', 'streamName', 'streamPosition')
"""
)

# KEYS: session, stream:<name>, streams; ARGV: sid, data, tStart, tEnd, now, ttl, name
_PUBLISH = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'streamSessionId') ~= ARGV[1] then return false end
local id = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'data', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[7])
widen(KEYS[1], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], 'lastUpdated', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return id
"""
)

# KEYS: session, lastStreamSessionId, streams, stream:<name>; ARGV: name, now, ttl, live, json, tStart, tEnd
_UPDATE = (
    _PRELUDE
    + """
local changed = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[4] ~= '1' then return 0 end
  allocate(ARGV[1], ARGV[2])
  changed = 1
end
if redis.call('HGET', KEYS[1], 'json') ~= ARGV[5] then
  redis.call('HSET', KEYS[1], 'json', ARGV[5])
  changed = 1
end
widen(KEYS[1], ARGV[6], ARGV[7])
redis.call('HSET', KEYS[1], 'lastUpdated', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return changed
"""
)

# KEYS: stream:<name>, streams; ARGV: name, max length, stale before (ms). -1 when dropped, else entries trimmed.
_TRIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return -1
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 and tonumber(string.match(last[1][1], '^(%d+)')) < tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return -1
end
return redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
"""


def _num(value):
    return "" if value is None else str(int(value))


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisBuffer:
    """The spec §9 buffer in the Redis ``url`` names (sync client for writers, asyncio client per loop for readers)."""

    def __init__(self, url):
        self.url = url
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        self._open = self.client.register_script(_OPEN)
        self._publish = self.client.register_script(_PUBLISH)
        self._update = self.client.register_script(_UPDATE)
        self._trim = self.client.register_script(_TRIM)
        self._async = weakref.WeakKeyDictionary()  # event loop -> redis.asyncio.Redis
        self._lock = threading.Lock()

    # --- writer side -----------------------------------------------------------------------

    def _session_keys(self, identity, name):
        return [keys.session_key(identity), keys.LAST_STREAM_SESSION_ID, keys.STREAMS, keys.stream_key(name)]

    def open_session(self, identity, stream_name=None):
        """``(stream session id, stream name, position)``, allocating the directory entry if absent."""
        name = stream_name or keys.stream_name_for(identity)
        sid, name, position = self._open(self._session_keys(identity, name), [name, now_ms(), session_ttl_ms()])
        return _text(sid), _text(name), _text(position)

    def publish(self, identity, session_id, name, data, t_start=None, t_end=None):
        """XADD ``data`` for the stream session; ``None`` if the directory entry is gone or was replaced."""
        entry_id = self._publish(
            [keys.session_key(identity), keys.stream_key(name), keys.STREAMS],
            [session_id, data, _num(t_start), _num(t_end), now_ms(), session_ttl_ms(), name],
        )
        return _text(entry_id) if entry_id is not None else None

    def update_session(self, identity, json_text, t_start=None, t_end=None, live=True):
        """Store the session JSON and widen the time range; creates the entry only for a live session.

        True when the entry was created or its JSON changed.
        """
        name = keys.stream_name_for(identity)
        changed = self._update(
            self._session_keys(identity, name),
            [name, now_ms(), session_ttl_ms(), "1" if live else "0", json_text, _num(t_start), _num(t_end)],
        )
        return bool(changed)

    def has_session(self, identity):
        return bool(self.client.exists(keys.session_key(identity)))

    def delete_session(self, identity):
        """Remove the directory entry (its stream stays until trimmed or idle)."""
        self.client.delete(keys.session_key(identity))

    def get_session(self, identity):
        return Directory.from_hash(self.client.hgetall(keys.session_key(identity)))

    # --- reader side -----------------------------------------------------------------------

    @property
    def aclient(self):
        """The asyncio client of the running event loop (connections belong to one loop)."""
        import asyncio

        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            # Reads outlast the blocking XREADs (redis-py 8 would time them out after 5 s by default).
            client = self._async[loop] = redis.asyncio.Redis.from_url(
                self.url, socket_connect_timeout=5, socket_timeout=30
            )
        return client

    async def aget_session(self, identity):
        return Directory.from_hash(await self.aclient.hgetall(keys.session_key(identity)))

    async def alast_id(self, name):
        last = await self.aclient.xrevrange(keys.stream_key(name), "+", "-", count=1)
        return _text(last[0][0]) if last else None

    async def aread_range(self, name, after, upto, count=100):
        """Entries with ``after < id <= upto`` (oldest first, at most ``count``)."""
        start = f"({after}" if after and after != keys.NEW_STREAM_POSITION else "-"
        found = await self.aclient.xrange(keys.stream_key(name), start, upto or "+", count=count)
        return [Entry.from_fields(i, f) for i, f in found]

    async def aread_new(self, name, after, block_ms=100, count=1000):
        """Entries after ``after``, waiting up to ``block_ms`` for one to arrive."""
        found = await self.aclient.xread(
            {keys.stream_key(name): after or keys.NEW_STREAM_POSITION}, count=count, block=block_ms or None
        )
        if not found:
            return []
        return [Entry.from_fields(i, f) for i, f in found[0][1]]

    # --- trimmer ---------------------------------------------------------------------------

    def stream_names(self):
        return [_text(n) for n in self.client.sscan_iter(keys.STREAMS, count=500)]

    def trim(self, name, max_length, stale_before_ms):
        """Trim to ``max_length`` entries, or drop the stream when absent or its newest entry is stale.

        Returns the number of entries trimmed, or -1 when the stream was dropped.
        """
        return int(self._trim([keys.stream_key(name), keys.STREAMS], [name, max_length, stale_before_ms]))

    def close(self):
        self.client.close()
