"""One grpc.Server holding every app's servicers, the health service and server reflection."""

import logging
import threading
from concurrent import futures
from contextlib import contextmanager

import grpc
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils.module_loading import import_string
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rta_site.auth import tls
from rta_site.auth.grpc_interceptor import AuthInterceptor
from rta_site.grpc_calls import wrap_calls
from rta_site.grpc_errors import ErrorInterceptor
from rta_site.grpc_requests import RequestParsingInterceptor
from rta_site.grpc_streams import StreamLimitsInterceptor
from rta_site.monitoring.metrics import MetricsInterceptor

log = logging.getLogger(__name__)


class DatabaseConnectionInterceptor(grpc.ServerInterceptor):
    """Database connections around each call.

    Without a pool, each worker thread keeps its own connection (CONN_MAX_AGE),
    recycled when stale. With a pool, a unary call's thread (one of the
    ``RTA_GRPC_UNARY_WORKERS``) keeps the connection it took between calls:
    handing it back after every call cost a pool round trip per call; one that
    failed and is no longer usable, or left inside a transaction, goes back. A
    streaming call hands its connection back when it ends (there may be many
    stream threads, and a stream's own length dwarfs the round trip).
    """

    def __init__(self):
        self._wrapped = {}  # handler -> the same around each call: made once per method

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not _pooled():
            close_old_connections()
            return handler
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            around = _kept_connection if handler.unary_unary else _returned_connection
            wrapped = self._wrapped.setdefault(handler, wrap_calls(handler, around))
        return wrapped


class CallThreadsInterceptor(grpc.ServerInterceptor):
    """Each kind of call runs on threads of its own, so no kind can take the threads another needs.

    - unary calls: a few threads (``RTA_GRPC_UNARY_WORKERS``). Short and CPU-bound
      under one interpreter lock, they go faster on a few threads than spread
      over many (fewer switches: ~20 % more session updates per CPU second here);
    - calls streaming requests (a DataWriter stream, a config upload): the write
      pool (``RTA_GRPC_WRITE_WORKERS``). A live session's writer holds its thread
      for hours, and a client may leave one open and silent;
    - read streams: the server's own pool (``RTA_GRPC_WORKERS``), which writers,
      however many, never reach.
    """

    def __init__(self, unary_pool, write_pool):
        self.pools = {"unary_unary": unary_pool, "stream_unary": write_pool, "stream_stream": write_pool}
        self._wrapped = {}

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        kind = _kind(handler)
        if kind not in self.pools:
            return handler
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            behaviour = getattr(handler, kind)

            def call(request, context):
                return behaviour(request, context)  # a stream's response iterator, too

            call.experimental_thread_pool = self.pools[kind]  # honoured by grpc's server for this behaviour
            wrapped = self._wrapped.setdefault(handler, handler._replace(**{kind: call}))
        return wrapped


def _kind(handler):
    if handler is None:
        return None
    return next(
        kind for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream") if getattr(handler, kind)
    )


@contextmanager
def _returned_connection(context):
    try:
        yield
    finally:
        connection.close()


@contextmanager
def _kept_connection(context):
    try:
        yield
    finally:
        if connection.connection is not None and (
            connection.in_atomic_block or (connection.errors_occurred and not connection.is_usable())
        ):
            connection.close()


class _WorkerThreads(futures.ThreadPoolExecutor):
    """gRPC's worker threads, which keep their database connections between calls."""

    def release_connections(self, timeout=5.0):
        """Have every worker thread hand its connection back (the server has stopped)."""
        count = len(self._threads)
        if not count:
            return
        barrier = threading.Barrier(count, timeout=timeout)

        def release():
            try:
                barrier.wait()  # holds each thread until every one has a job: one job per thread
            except threading.BrokenBarrierError:
                pass
            connection.close()

        futures.wait([self.submit(release) for _ in range(count)], timeout=timeout * 2)


def _releasing_on_stop(server, workers, write_workers):
    """``server.stop`` whose event is set once the server has stopped and its threads' connections are back.

    The write pool's threads end then (streams hand their connections back as they end).
    """
    stop = server.stop

    def stop_and_release(grace=None):
        stopped, released = stop(grace), threading.Event()

        def finish():
            stopped.wait()
            workers.release_connections()
            write_workers.shutdown(wait=False)
            released.set()

        threading.Thread(target=finish, name="grpc-stop", daemon=True).start()
        return released

    server.stop = stop_and_release


def _pooled():
    return bool(settings.DATABASES["default"].get("OPTIONS", {}).get("pool"))


def build_server(port=None, bind=None, max_workers=None, reuse_port=False):
    """A configured (not started) server and the port it bound (``port=0`` picks a free one).

    ``reuse_port`` lets several processes listen on one port (SO_REUSEPORT): the
    kernel spreads connections over them, which is how gRPC scales past one
    Python interpreter (see ``rta_site.grpc_workers``).
    """
    port = settings.RTA_GRPC_PORT if port is None else port
    bind = bind or settings.RTA_BIND_ADDRESS
    max_message = settings.RTA_GRPC_MAX_MESSAGE_BYTES
    workers = _WorkerThreads(max_workers=max_workers or settings.RTA_GRPC_WORKERS, thread_name_prefix="grpc")
    unary_workers = _WorkerThreads(max_workers=settings.RTA_GRPC_UNARY_WORKERS, thread_name_prefix="grpc-unary")
    write_workers = _WorkerThreads(max_workers=settings.RTA_GRPC_WRITE_WORKERS, thread_name_prefix="grpc-write")
    server = grpc.server(
        workers,
        interceptors=[
            CallThreadsInterceptor(unary_workers, write_workers),
            DatabaseConnectionInterceptor(),
            MetricsInterceptor(),
            ErrorInterceptor(),
            # Inside the error interceptor, which answers what they raise:
            AuthInterceptor(),  # bearer tokens (rta_site.auth), before anything reads the request
            StreamLimitsInterceptor(settings.RTA_GRPC_MAX_STREAMS_PER_PEER, settings.RTA_GRPC_STREAM_IDLE_SECONDS),
            RequestParsingInterceptor(),
        ],
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # Each stream may have this much in flight before the handler reads it: a writer's
            # next messages arrive while the last is processed (64 KiB, gRPC's start, is
            # less than one 10,000-sample timestamped message).
            ("grpc.http2.lookahead_bytes", settings.RTA_GRPC_STREAM_WINDOW_BYTES),
        ],
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    for path in settings.RTA_GRPC_SERVICES:
        names += import_string(path)(server)
    for name in names:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(names + [reflection.SERVICE_NAME], server)
    address = f"{bind}:{port}" if ":" not in bind else f"[{bind}]:{port}"
    credentials = tls.grpc_server_credentials()  # TLS with RTA_TLS_CERT_FILE + RTA_TLS_KEY_FILE
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if not bound:
        raise RuntimeError(f"could not bind gRPC port {bind}:{port}")
    server.health_servicer = health_servicer
    server.service_names = names
    _releasing_on_stop(server, unary_workers, write_workers)
    return server, bound
