"""daphne's server with flow control on streamed HTTP responses.

daphne writes each ``http.response.body`` message to Twisted at once, so an
application streaming faster than its client reads would pile the whole
response up in the server's memory (a data response can be gigabytes). Here
an application's ``await send(body)`` of a streamed response returns only once
Twisted has handed the previous bytes to the kernel: a push producer
registered on the request is paused while the connection's write buffer is
full. Memory per response stays about one block, and each block goes to the
socket as it is (Twisted joins what is still pending with new data, a copy of
every byte, when writes arrive faster than the socket drains).
"""

import asyncio

from daphne.server import Server
from twisted.web import http


class _Drain:
    """Push producer of one streamed response: ``resumed`` is set while the client keeps up."""

    def __init__(self):
        self.resumed = asyncio.Event()
        self.resumed.set()

    def pauseProducing(self):
        self.resumed.clear()

    def resumeProducing(self):
        self.resumed.set()

    def stopProducing(self):
        self.resumed.set()  # the connection is gone: let the application finish (its sends are dropped)


class FlowControlledServer(Server):
    async def handle_reply(self, protocol, message):
        streaming = message.get("type") == "http.response.body" and isinstance(protocol, http.Request)
        drain = protocol.__dict__.get("_rta_drain") if streaming else None
        if drain is not None and not message.get("more_body", False):
            # The last body message finishes the request: Twisted wants its producer gone first.
            del protocol._rta_drain
            protocol.unregisterProducer()
        await super().handle_reply(protocol, message)
        if (
            not streaming
            or not message.get("more_body", False)
            or getattr(protocol, "channel", None) is None
            or protocol.finished
        ):
            return
        if drain is None:
            drain = protocol._rta_drain = _Drain()
            protocol.registerProducer(drain, True)
            if protocol.channel._waitingForTransport:  # already full before we registered
                drain.pauseProducing()
        await drain.resumed.wait()
