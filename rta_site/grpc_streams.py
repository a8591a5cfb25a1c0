"""Bounds on streaming calls: how many one client address may hold, and how long a writer may idle.

Each open streaming call holds a server thread for as long as it lasts (the
server is synchronous). Read streams and write streams have pools of their
own (``rta_site.grpc_server``), so writers cannot take the threads reads need;
within that, ``StreamLimitsInterceptor``

- refuses a streaming call from a client address that holds
  ``RTA_GRPC_MAX_STREAMS_PER_PEER`` already (RESOURCE_EXHAUSTED), so one
  client cannot take every thread of a pool;
- ends a stream whose client has sent no request for
  ``RTA_GRPC_STREAM_IDLE_SECONDS`` while the handler waits for one
  (DEADLINE_EXCEEDED), so a writer that went quiet gives its thread back.
  Only the client's silence counts: time the server spends on a request
  (a flush) does not.

It must sit inside the error interceptor (``rta_site.grpc_errors``), which
answers the refusal.
"""

import logging
import threading
import time
from collections import Counter
from contextlib import contextmanager

import grpc

from rta_core.errors import ServiceError

log = logging.getLogger(__name__)


class TooManyStreams(ServiceError):
    """The client address holds as many streaming calls as it may."""

    http_status = 429
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED


def peer_address(peer):
    """The client address of a gRPC peer, without its port (``ipv4:10.0.0.5:51234`` -> ``ipv4:10.0.0.5``)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer


class PeerStreams:
    """The streaming calls each client address holds open, up to ``limit`` each (0: no limit)."""

    def __init__(self, limit):
        self.limit = limit
        self._lock = threading.Lock()
        self._open = Counter()

    @contextmanager
    def held(self, address):
        with self._lock:
            if self.limit and self._open[address] >= self.limit:
                raise TooManyStreams(
                    f"this client address has {self.limit} streaming calls open already, the most it may: "
                    "end one before starting another"
                )
            self._open[address] += 1
        try:
            yield
        finally:
            with self._lock:
                self._open[address] -= 1
                if not self._open[address]:
                    del self._open[address]

    def open_streams(self, address):
        with self._lock:
            return self._open[address]


class IdleWatch:
    """Ends calls whose client has sent nothing for ``seconds`` while their handler waits for a request.

    One thread watches every waiting call; it runs while any call waits and
    wakes when the longest wait would expire.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self._cond = threading.Condition()
        self._waiting = {}  # token -> (monotonic time the wait began, servicer context)
        self._thread = None

    def requests(self, iterator, context):
        """The requests of ``iterator``, each wait for the next one watched."""
        token = object()
        try:
            while True:
                self._begin(token, context)
                try:
                    request = next(iterator)
                except StopIteration:
                    return
                finally:
                    self._end(token)
                yield request
        finally:
            self._end(token)

    def _begin(self, token, context):
        with self._cond:
            self._waiting[token] = (time.monotonic(), context)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="grpc-idle-watch", daemon=True)
                self._thread.start()

    def _end(self, token):
        with self._cond:
            self._waiting.pop(token, None)

    def _watch(self):
        while True:
            with self._cond:
                if not self._waiting:
                    self._thread = None
                    return
                now = time.monotonic()
                expired = [token for token, (since, _) in self._waiting.items() if now - since >= self.seconds]
                if not expired:
                    first = min(since for since, _ in self._waiting.values())
                    self._cond.wait(first + self.seconds - now)
                    continue
                contexts = [self._waiting.pop(token)[1] for token in expired]
            for context in contexts:
                _end_idle_call(context, self.seconds)


def _end_idle_call(context, seconds):
    message = f"no request for {seconds:g} s: an idle stream is ended (RTA_GRPC_STREAM_IDLE_SECONDS)"
    log.info("ending an idle gRPC stream from %s: %s", context.peer(), message)
    context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)  # as metrics and logs record the call
    context.set_details(message)
    try:
        # The call ends with this status; the handler's wait for a request raises grpc.RpcError
        # (a cancelled call: nothing logged). Not public API: ``cancel()`` is, with a bare CANCELLED.
        from grpc._cython import cygrpc

        context._rpc_event.call.cancel(cygrpc.StatusCode.deadline_exceeded, message)
    except (ImportError, AttributeError, TypeError):
        context.cancel()


class StreamLimitsInterceptor(grpc.ServerInterceptor):
    """Caps streaming calls per client address; ends write streams left idle (must sit inside ErrorInterceptor)."""

    def __init__(self, max_per_peer, idle_seconds):
        self.peers = PeerStreams(max_per_peer)
        self.idle = IdleWatch(idle_seconds) if idle_seconds and idle_seconds > 0 else None
        self._wrapped = {}  # handler -> the limited handler: made once per method

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary:
            return handler
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            wrapped = self._wrapped.setdefault(handler, self._limited(handler))
        return wrapped

    def _limited(self, handler):
        peers, idle = self.peers, self.idle

        def requests(request, context):
            return idle.requests(request, context) if idle is not None else request

        if handler.unary_stream:
            behaviour = handler.unary_stream

            def read(request, context):
                with peers.held(peer_address(context.peer())):
                    yield from behaviour(request, context)

            return handler._replace(unary_stream=read)
        if handler.stream_unary:
            behaviour = handler.stream_unary

            def write(request_iterator, context):
                with peers.held(peer_address(context.peer())):
                    return behaviour(requests(request_iterator, context), context)

            return handler._replace(stream_unary=write)
        behaviour = handler.stream_stream

        def exchange(request_iterator, context):
            with peers.held(peer_address(context.peer())):
                yield from behaviour(requests(request_iterator, context), context)

        return handler._replace(stream_stream=exchange)
