"""``WS /rta/v2/sessions/{identity}/stream``: the Channels adapter over ``ClientStream``.

Handshake: the ``mat.ocs.rta.stream-lz4`` sub-protocol is required (406
otherwise). A session that cannot be streamed (unknown, outside the folders of
a folder-restricted token, or not waiting/open) is accepted and closed normally
(1000) without a message. The token was checked before (``scope["rta_access"]``,
``rta_site.auth.websocket``); its folders are checked here, at the handshake. Client messages
must be binary ``StreamRequest``s of at most 64 KiB: a text frame closes
with 1003, an oversized one with 1009, anything undecodable or empty with
1002 (protocol error).
"""

import logging

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from google.protobuf.message import DecodeError
from rta.model.net import stream_pb2

from data_app.live import SUBPROTOCOL, sessions, transport
from data_app.live.buffers import get_buffer
from data_app.live.client import (
    CLOSE_INTERNAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    ClientStream,
)
from data_app.live.hub import get_hub
from data_app.metrics import WEBSOCKET_CLIENTS
from rta_core.access import Access
from sessions_app.services import scope as folder_scope

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024


async def stream_json(identity, access=Access.ANONYMOUS_FULL):
    """``(json text, live)`` of the session: the database's, else the buffer directory's (third-party ingest).

    ``None`` for a session ``access`` does not reach: a folder-restricted caller streams only stored
    sessions in its folders (one known to the buffer alone is in no folder).
    """
    if access.folder_restricted:
        return await database_sync_to_async(_load_in_scope)(identity, access)
    loaded = await database_sync_to_async(sessions.load)(identity)
    if loaded is not None:
        return loaded
    try:
        directory = await get_buffer().aget_session(identity)
    except Exception:  # no buffer, no stream: the client is closed normally
        log.exception("live: cannot read the directory entry of %r", identity)
        return None
    if directory is not None and directory.json:
        return directory.json, sessions.json_is_live(directory.json)
    return None


def _load_in_scope(identity, access):
    """``(json text, live)`` of a stored session ``access`` reaches, naming only related sessions it reaches."""
    if not folder_scope.reaches_session(access, identity):
        return None
    loaded = sessions.load(identity)
    return None if loaded is None else (folder_scope.scoped_session_json(access, loaded[0]), loaded[1])


class LiveStreamConsumer(AsyncConsumer):
    stream = None

    async def websocket_connect(self, message):
        self.identity = self.scope["url_route"]["kwargs"]["identity"]
        if SUBPROTOCOL not in (self.scope.get("subprotocols") or []):
            await transport.deny(self.scope, self.base_send, 406, f"the {SUBPROTOCOL} sub-protocol is required")
            raise StopConsumer
        # Behind BearerTokenWebSocketMiddleware (rta_site.asgi); mounted without it, nothing restricts access.
        access = self.scope.get("rta_access", Access.ANONYMOUS_FULL)
        found = await stream_json(self.identity, access)
        await self.base_send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
        if found is None or not found[1]:
            await self.base_send({"type": "websocket.close", "code": 1000})
            raise StopConsumer
        self.group = sessions.group_name(self.identity)
        if self.channel_layer is not None:
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
            except Exception:  # updates still arrive by polling the directory entry
                log.exception("live: cannot join the channel layer group of %r", self.identity)
        self.stream = ClientStream(self.identity, self.base_send, transport.flow_control(self.base_send), access)
        WEBSOCKET_CLIENTS.inc()
        try:
            await self.stream.start(found[0])
        except Exception:
            log.exception("live: cannot stream %r", self.identity)
            self.stream.close(CLOSE_INTERNAL, "live buffer unavailable")

    async def websocket_receive(self, message):
        if self.stream is None or self.stream.closing:
            return
        data = message.get("bytes")
        if data is None:
            self.stream.close(CLOSE_UNSUPPORTED_DATA, "messages must be binary StreamRequests")
            return
        if len(data) > MAX_REQUEST_BYTES:
            self.stream.close(CLOSE_TOO_BIG, f"a StreamRequest must not exceed {MAX_REQUEST_BYTES} bytes")
            return
        try:
            request = stream_pb2.StreamRequest.FromString(data)
        except DecodeError:
            self.stream.close(CLOSE_PROTOCOL_ERROR, "not a StreamRequest")
            return
        if request.WhichOneof("type") != "subscribe":
            self.stream.close(CLOSE_PROTOCOL_ERROR, "empty StreamRequest")
            return
        self.stream.subscribe(request.subscribe)

    async def live_session(self, event):
        """Channel layer: the session's directory entry changed."""
        get_hub().nudge(self.identity)

    async def websocket_disconnect(self, message):
        if self.stream is not None:
            WEBSOCKET_CLIENTS.dec()
            await self.stream.stop()
            if self.channel_layer is not None:
                try:
                    await self.channel_layer.group_discard(self.group, self.channel_name)
                except Exception:  # the group entry expires on its own
                    log.warning("live: could not leave the channel layer group of %r", self.identity)
        raise StopConsumer
