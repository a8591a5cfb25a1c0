"""Key and field names of the Redis buffer protocol (spec §9), shared with third-party ingest.

| key | type | what |
|---|---|---|
| ``lastStreamSessionId`` | string (INCRBY) | last allocated stream session id |
| ``streams`` | set | every stream name (without ``stream:``), for trimming |
| ``stream:<name>`` | stream | entries ``id`` (stream session id), ``data`` (LZ4 frame of a ``StreamDataBurst``) |
| ``sessions:<identity>`` | hash, expires | the session directory entry of one session |

Directory entry fields: ``streamSessionId``, ``streamName``, ``streamPosition``
(stream entry id when the session started, ``0-0`` for a new stream),
``lastUpdated`` (ms since the epoch), ``json`` (latest session JSON),
``tStart``/``tEnd`` (ns, written together).
"""

LAST_STREAM_SESSION_ID = "lastStreamSessionId"
STREAMS = "streams"
STREAM_PREFIX = "stream:"
SESSION_PREFIX = "sessions:"

F_SESSION_ID = "streamSessionId"
F_NAME = "streamName"
F_POSITION = "streamPosition"
F_UPDATED = "lastUpdated"
F_JSON = "json"
F_START = "tStart"
F_END = "tEnd"
DIRECTORY_FIELDS = (F_SESSION_ID, F_NAME, F_POSITION, F_UPDATED, F_JSON, F_START, F_END)

E_ID = "id"
E_DATA = "data"
NEW_STREAM_POSITION = "0-0"


def stream_key(name):
    return STREAM_PREFIX + name


def session_key(identity):
    return SESSION_PREFIX + identity


def stream_name_for(identity):
    """The stream this server's writers use for a session: one stream per data identity."""
    return identity
