"""What every live buffer back end shares: entry ids, directory entries, stream entries, the interface.

Back ends (``memory``, ``redis``) implement ``LiveBuffer``; ``get_buffer()`` in
the package picks one, as ``django.core.cache`` does with its back ends.
"""

import time
from dataclasses import dataclass
from typing import Protocol

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


def int_or_none(value):
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
        start, end = int_or_none(fields.get(keys.F_START)), int_or_none(fields.get(keys.F_END))
        if start is None or end is None:
            start = end = None
        return cls(
            _text(sid),
            _text(name),
            position,
            int_or_none(fields.get(keys.F_UPDATED)),
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


class LiveBuffer(Protocol):
    """The live buffer (spec §9). Writer-side calls are synchronous (writers run in threads);
    reader-side calls are coroutines (the WebSocket side runs on the ASGI event loop)."""

    # writer side
    def open_session(self, identity, stream_name=None): ...
    def publish(self, identity, session_id, name, data, t_start=None, t_end=None): ...
    def update_session(self, identity, json_text, t_start=None, t_end=None, live=True): ...
    def has_session(self, identity): ...
    def delete_session(self, identity): ...
    def get_session(self, identity): ...

    # reader side
    async def aget_session(self, identity): ...
    async def alast_id(self, name): ...
    async def aread_range(self, name, after, upto, count): ...
    async def aread_new(self, name, after, count, block_ms): ...

    # trimmer
    def stream_names(self): ...
    def trim(self, name, max_length, stale_before_ms): ...
    def close(self): ...
