"""daphne's HTTP server with flow control and the limits a server facing any client needs.

Flow control. daphne writes each ``http.response.body`` message to Twisted at
once, so an application streaming faster than its client reads would pile the
whole response up in the server's memory (a data response can be gigabytes).
Here an application's ``await send(body)`` of a streamed response returns only
once Twisted has handed the previous bytes to the kernel: a push producer
registered on the request is paused while the connection's write buffer is
full. Memory per response stays about one block (plus the one the data views
read ahead), and each block goes to the socket as it is.

Limits (settings ``RTA_HTTP_*``, see docs/robustness.md):

- request bodies: refused with 413 from ``Content-Length`` before the body is
  read, and counted as a chunked body arrives (``rta_site.request_limits``);
- slow requests: the request line and headers must arrive within
  RTA_HTTP_HEADER_TIMEOUT of the first byte, the body within RTA_HTTP_BODY_TIMEOUT
  of the headers (408), and an idle keep-alive connection closes after
  RTA_HTTP_IDLE_TIMEOUT;
- slow readers: a client that takes no data for RTA_HTTP_SEND_TIMEOUT is
  dropped, and when the responses held for clients that do not keep up pass
  RTA_HTTP_RESPONSE_BUFFER_BYTES the client stalled longest is dropped.

A client that goes away is not an error: its response ends quietly. Each
request gets one access-log line (logger ``rta_site.access``) when
RTA_ACCESS_LOG is on.
"""

import asyncio
import json
import logging
import time
from urllib.parse import unquote

from daphne.http_protocol import HTTPFactory, WebRequest  # imports no reactor
from daphne.server import Server  # installs Twisted's asyncio reactor: before anything else does
from django.conf import settings
from twisted.web import http

from rta_site.monitoring.metrics import HTTP_CONNECTIONS_CLOSED, HTTP_STALLED_BYTES
from rta_site.request_limits import body_limit, too_large_message

log = logging.getLogger(__name__)
access_log = logging.getLogger("rta_site.access")

# After refusing a body, how long the server goes on reading (and dropping) what the client still
# sends, so that a client writing its whole body before it reads gets the answer rather than a reset.
REFUSED_LINGER_SECONDS = 5.0
# Longest request target an access-log line quotes.
LOGGED_PATH_CHARS = 1000

_REASONS = {408: b"Request Timeout", 413: b"Content Too Large"}


def _raw_response(status, message):
    """A complete HTTP/1.1 error response with a JSON body, closing the connection."""
    body = json.dumps({"error": message}).encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    return head % (status, _REASONS[status], len(body)) + body


def _log_access(method, target, status, sent, started, client):
    if not access_log.isEnabledFor(logging.INFO):
        return
    path = target.decode("ascii", "replace") if isinstance(target, bytes) else str(target)
    if len(path) > LOGGED_PATH_CHARS:
        path = path[:LOGGED_PATH_CHARS] + "…"
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    access_log.info(
        "%s %s %s %dB %.1fms %s",
        method,
        path,
        status,
        sent,
        duration_ms,
        client or "-",
        extra={
            "method": method,
            "path": path,
            "status": status,
            "bytes": sent,
            "duration_ms": duration_ms,
            "client": client,
        },
    )


def _peer(transport):
    peer = transport.getPeer() if transport is not None else None
    return f"{peer.host}:{peer.port}" if hasattr(peer, "host") else None


# --- requests: body limits and the access log ----------------------------------------------------


class _Request(WebRequest):
    """daphne's request, refusing an oversized body and logging once how it ended."""

    def __init__(self, *args, **kwargs):
        self._rta_started = time.monotonic()
        self._rta_logged = False
        self._rta_refused = False
        self._rta_limit = None
        self._rta_received = 0
        self._rta_command = self._rta_target = None  # known once the headers are in
        super().__init__(*args, **kwargs)

    # Body: gotLength (headers in) -> handleContentChunk* -> requestReceived (body complete).

    def gotLength(self, length):
        self._rta_command, self._rta_target = self.channel._command, self.channel._path
        raw_path = self._rta_target.split(b"?", 1)[0]
        self._rta_limit = body_limit(unquote(raw_path.decode("ascii", "replace")))
        if length is not None and length > self._rta_limit:
            self._rta_refuse(too_large_message(self._rta_limit, length))
            return
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self._rta_refused:
            return  # dropped: the answer has gone out
        self._rta_received += len(data)
        if self._rta_received > self._rta_limit:  # a chunked body: counted as it arrives
            self._rta_refuse(too_large_message(self._rta_limit))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self._rta_refused:
            if self.channel is not None:
                self.channel.loseConnection()  # the refused body has all arrived
            return
        super().requestReceived(command, path, version)

    def _rta_refuse(self, message):
        channel = self.channel
        self._rta_refused = True
        # Twisted would answer "100 Continue" after this otherwise.
        self.requestHeaders.removeHeader(b"Expect")
        channel.transport.write(_raw_response(413, message))
        HTTP_CONNECTIONS_CLOSED.labels("body_too_large").inc()
        self._rta_log(413, 0)
        # The body is only drained now: in place of its 408 timer, the end of the drain.
        channel._rta_cancel_timer()
        channel._rta_timer = channel.callLater(REFUSED_LINGER_SECONDS, channel.loseConnection)

    def handle_exception(self, exception):
        # daphne would start an error page, which raises once a streamed response has started (and the client
        # would wait for ever): a body that fails midway (a data service behind the gateway gave up) is cut off.
        if self._response_started:
            if self.channel is not None and self.channel.transport is not None:
                self.channel.transport.abortConnection()
            return
        super().handle_exception(exception)

    # How it ended: once, whether finished or cut short.

    def finish(self):
        super().finish()
        self._rta_log_end()

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self._rta_log_end()

    def _rta_log_end(self):
        status = self.code if self._response_started else "-"  # "-": the client left before any answer
        self._rta_log(status, self.sentLength)

    def _rta_log(self, status, sent):
        if self._rta_logged or self._rta_command is None or not self.server.rta_access_log:
            return
        self._rta_logged = True
        method = self._rta_command.decode("ascii", "replace")
        _log_access(method, self._rta_target, status, sent, self._rta_started, _peer(getattr(self, "transport", None)))


# --- connections: header and body timeouts ---------------------------------------------------------


class _Channel(http.HTTPChannel):
    """Twisted's HTTP/1.1 connection, timing each request's headers and body."""

    _rta_timer = None

    def dataReceived(self, data):
        # The first byte of a request (not of a body, nor pipelined while one is handled) starts its clock.
        if self._rta_timer is None and not self._handlingRequest and self._transferDecoder is None:
            self._rta_start_timer(self.factory.server.rta_header_timeout, "header_timeout", "headers")
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._rta_cancel_timer()
        super().allHeadersReceived()  # gotLength: the request may refuse its body at once
        if not self.requests[-1]._rta_refused:
            self._rta_start_timer(self.factory.server.rta_body_timeout, "body_timeout", "body")

    def allContentReceived(self):
        self._rta_cancel_timer()
        super().allContentReceived()

    def connectionLost(self, reason):
        self._rta_cancel_timer()
        super().connectionLost(reason)

    def _rta_start_timer(self, seconds, reason, part):
        if seconds:
            self._rta_timer = self.callLater(seconds, self._rta_timed_out, seconds, reason, part)

    def _rta_cancel_timer(self):
        if self._rta_timer is not None:
            if self._rta_timer.active():
                self._rta_timer.cancel()
            self._rta_timer = None

    def _rta_timed_out(self, seconds, reason, part):
        self._rta_timer = None
        HTTP_CONNECTIONS_CLOSED.labels(reason).inc()
        log.info("closing %s: the request %s did not arrive within %g s", _peer(self.transport), part, seconds)
        self.transport.write(_raw_response(408, f"the request {part} did not arrive within {seconds:g} s"))
        if self.requests:
            self.requests[-1]._rta_log(408, 0)  # logged once its headers were in
        self.loseConnection()


def _channel_protocol(factory):
    # What http.HTTPFactory.protocol does, with our channel.
    return http._GenericHTTPChannelProtocol(_Channel())


class _HTTPFactory(HTTPFactory):
    protocol = _channel_protocol

    def __init__(self, server):
        super().__init__(server)
        self.timeOut = server.rta_idle_timeout or None  # Twisted's idle timeout (off while a request runs)

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = _Request
        return protocol


# --- responses: flow control, slow readers and the memory they hold --------------------------------


class _Drain:
    """Push producer of one streamed response: ``resumed`` is set while the client keeps up."""

    def __init__(self, request):
        self.request = request
        self.resumed = asyncio.Event()
        self.resumed.set()

    def pauseProducing(self):
        self.resumed.clear()

    def resumeProducing(self):
        self.resumed.set()

    def stopProducing(self):
        self.resumed.set()  # the connection is gone: let the application finish (its sends are dropped)

    def drop(self, reason):
        channel = self.request.channel
        if channel is not None and channel.transport is not None:
            HTTP_CONNECTIONS_CLOSED.labels(reason).inc()
            channel.transport.abortConnection()


class _StalledResponses:
    """Responses waiting for their clients, and the bytes they hold; over budget, the longest-waiting goes."""

    def __init__(self, budget):
        self.budget = budget
        self.waiting = {}  # drain -> bytes held; insertion order is waiting order
        self.total = 0

    def add(self, drain, held):
        self.waiting[drain] = held
        self.total += held
        HTTP_STALLED_BYTES.set(self.total)
        if self.budget:
            for oldest in list(self.waiting):
                if self.total <= self.budget or oldest is drain:
                    break
                log.info(
                    "dropping %s: responses held for slow clients reached RTA_HTTP_RESPONSE_BUFFER_BYTES (%d)",
                    _peer(oldest.request.transport),
                    self.budget,
                )
                self.remove(oldest)
                oldest.drop("response_budget")

    def remove(self, drain):
        held = self.waiting.pop(drain, None)
        if held is not None:
            self.total -= held
            HTTP_STALLED_BYTES.set(self.total)


class FlowControlledServer(Server):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rta_header_timeout = settings.RTA_HTTP_HEADER_TIMEOUT
        self.rta_body_timeout = settings.RTA_HTTP_BODY_TIMEOUT
        self.rta_idle_timeout = settings.RTA_HTTP_IDLE_TIMEOUT
        self.rta_send_timeout = settings.RTA_HTTP_SEND_TIMEOUT
        self.rta_access_log = settings.RTA_ACCESS_LOG
        self.rta_stalled = _StalledResponses(settings.RTA_HTTP_RESPONSE_BUFFER_BYTES)

    # daphne's run() makes its HTTPFactory and listens with it at once: ours takes its place.
    @property
    def http_factory(self):
        return self.__dict__.get("_rta_http_factory")

    @http_factory.setter
    def http_factory(self, daphne_factory):
        self._rta_http_factory = _HTTPFactory(self)

    def log_action(self, protocol, action, details):
        # daphne reports WebSocket events here (HTTP requests log themselves, see _Request).
        super().log_action(protocol, action, details)
        if protocol == "websocket" and action in ("connected", "rejected", "disconnected") and self.rta_access_log:
            path, client = str(details.get("path", "")), details.get("client")
            access_log.info(
                "WEBSOCKET %s %s %s",
                path[:LOGGED_PATH_CHARS],
                action,
                client or "-",
                extra={"method": "WEBSOCKET", "path": path[:LOGGED_PATH_CHARS], "event": action, "client": client},
            )

    async def handle_reply(self, protocol, message):
        streaming = message.get("type") == "http.response.body" and isinstance(protocol, http.Request)
        more = message.get("more_body", False)
        drain = protocol.__dict__.get("_rta_drain") if streaming else None
        if drain is not None and not more:
            # The last body message finishes the request: Twisted wants its producer gone first,
            # unless the client has gone already (then there is no channel to unregister from).
            del protocol._rta_drain
            if protocol.channel is not None:
                protocol.unregisterProducer()
        await super().handle_reply(protocol, message)
        if not streaming or not more or protocol.channel is None or protocol.finished:
            return
        if drain is None:
            drain = protocol._rta_drain = _Drain(protocol)
            protocol.registerProducer(drain, True)
            if protocol.channel._waitingForTransport:  # already full before we registered
                drain.pauseProducing()
        if not drain.resumed.is_set():
            await self._wait_for_client(drain, len(message.get("body", b"")))

    async def _wait_for_client(self, drain, block):
        # Held meanwhile: the block being sent, and about as much read ahead by the application.
        self.rta_stalled.add(drain, 2 * block)
        try:
            await asyncio.wait_for(drain.resumed.wait(), self.rta_send_timeout or None)
        except TimeoutError:
            log.info(
                "dropping %s: it took no data for %g s (RTA_HTTP_SEND_TIMEOUT)",
                _peer(drain.request.transport),
                self.rta_send_timeout,
            )
            drain.drop("send_timeout")
        finally:
            self.rta_stalled.remove(drain)
