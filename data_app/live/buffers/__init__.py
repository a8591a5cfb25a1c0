"""The live buffer (spec §9): back ends and ``get_buffer()``, which picks this process's one.

``redis.RedisBuffer`` speaks the spec §9 protocol and is used when ``RTA_REDIS_URL``
is set; ``memory.MemoryBuffer`` keeps the same streams, ids and directory in
this process for the embedded single-process server. Both implement
``base.LiveBuffer``.
"""

import threading

from django.conf import settings

from data_app.live.buffers.base import (
    Directory,
    Entry,
    LiveBuffer,
    format_id,
    later_id,
    now_ms,
    parse_id,
    session_ttl_ms,
)
from data_app.live.buffers.memory import MemoryBuffer

__all__ = [
    "Directory",
    "Entry",
    "LiveBuffer",
    "MemoryBuffer",
    "format_id",
    "get_buffer",
    "later_id",
    "now_ms",
    "parse_id",
    "session_ttl_ms",
]

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
        from data_app.live.buffers.redis import RedisBuffer

        with _redis_lock:
            buffer = _redis.get(url)
            if buffer is None:
                buffer = _redis[url] = RedisBuffer(url)
    return buffer
