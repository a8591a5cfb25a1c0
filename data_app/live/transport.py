"""What ASGI leaves out of WebSockets, taken from the server when it is daphne.

ASGI has no way to refuse a WebSocket handshake with a chosen HTTP status
unless the server offers the ``websocket.http.response`` extension, and no
back-pressure on ``websocket.send``: daphne writes every message into the
socket's user-space buffer at once. Daphne (autobahn) also refuses close
codes below 3000 from applications, 1002 protocol error included. Under
daphne all three come from its protocol object (the first argument bound into
the ``send`` callable it hands the application): a refusal is the autobahn
``ConnectionDeny`` with our status, a close is autobahn's own close frame, and
back-pressure is a Twisted push producer registered on the TCP transport,
paused while more than the transport's buffer size (64 KiB) waits.
Under other servers the extension is used when offered (otherwise the
server's default refusal), and ``send`` is trusted to apply back-pressure.
"""

import asyncio
import functools
import json
import logging

log = logging.getLogger(__name__)


def daphne_protocol(send):
    """Daphne's WebSocket protocol behind an ASGI ``send`` callable, or ``None``."""
    if isinstance(send, functools.partial) and send.args:
        protocol = send.args[0]
        if type(protocol).__module__.startswith("daphne.") and hasattr(protocol, "transport"):
            return protocol
    return None


async def deny(scope, send, status, message):
    """Refuse the handshake with HTTP ``status`` and a JSON ``{"error": message}`` body where possible."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    protocol = daphne_protocol(send)
    if protocol is not None and getattr(protocol, "handshake_deferred", None) is not None:
        from autobahn.websocket.types import ConnectionDeny

        # What daphne's serverReject does, with our status instead of 403.
        deferred = protocol.handshake_deferred
        del protocol.handshake_deferred
        deferred.errback(ConnectionDeny(code=status, reason=message.replace("\r", " ").replace("\n", " ")))
        protocol.server.protocol_disconnected(protocol)
        return
    await send({"type": "websocket.close", "code": 1008})


async def close(send, code, reason=""):
    """Close the WebSocket with ``code``.

    Autobahn (daphne) lets an application close only with 1000 or 3000-4999; the
    protocol's own codes (1002 protocol error, 1003, 1008, 1009, 1011) are sent as
    the close frame autobahn itself would send.
    """
    protocol = daphne_protocol(send)
    if protocol is not None and code != 1000 and not 3000 <= code <= 4999 and hasattr(protocol, "sendCloseFrame"):
        protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123] or None)
        return
    message = {"type": "websocket.close", "code": code}
    if reason:
        message["reason"] = reason
    await send(message)


class AlwaysWritable:
    """Flow control for servers whose ``send`` applies back-pressure itself."""

    async def wait_writable(self):
        return None

    def release(self):
        pass


class TransportFlow:
    """A Twisted push producer on daphne's TCP transport: ``wait_writable`` blocks while it is paused."""

    def __init__(self, transport):
        self.transport = transport
        self._writable = asyncio.Event()
        self._writable.set()
        self._registered = False

    def register(self):
        # After the HTTP upgrade the transport may still name the HTTP channel as its producer;
        # that channel no longer owns the connection, so the WebSocket takes the role over.
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.registerProducer(self, True)
        self._registered = True
        return self

    # IPushProducer (called by Twisted on the event loop's thread: daphne runs the asyncio reactor).
    def pauseProducing(self):
        self._writable.clear()

    def resumeProducing(self):
        self._writable.set()

    def stopProducing(self):
        self._writable.set()

    async def wait_writable(self):
        while not self._writable.is_set():
            try:
                await asyncio.wait_for(self._writable.wait(), 1.0)
            except TimeoutError:
                if getattr(self.transport, "producer", None) is not self:
                    # Unregistered by someone else (Twisted will not resume us): stop waiting for it.
                    self._writable.set()

    def release(self):
        if self._registered and getattr(self.transport, "producer", None) is self:
            try:
                self.transport.unregisterProducer()
            except Exception:  # the connection is already gone
                pass
        self._registered = False
        self._writable.set()


def flow_control(send):
    """The flow control of the connection behind ``send``."""
    protocol = daphne_protocol(send)
    transport = getattr(protocol, "transport", None) if protocol is not None else None
    if transport is not None and hasattr(transport, "registerProducer"):
        try:
            return TransportFlow(transport).register()
        except Exception:
            log.exception("live: cannot watch the socket buffer; slow clients are bounded by the outbox only")
    return AlwaysWritable()
