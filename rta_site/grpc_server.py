"""One grpc.Server holding every app's servicers, the health service and server reflection."""
import logging
from concurrent import futures
from contextlib import contextmanager

import grpc
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils.module_loading import import_string
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rta_site.grpc_calls import wrap_calls
from rta_site.monitoring.metrics import MetricsInterceptor

log = logging.getLogger(__name__)


class DatabaseConnectionInterceptor(grpc.ServerInterceptor):
    """Database connections around each call, as Django manages them per HTTP request.

    Stale connections are recycled before a call. With a connection pool, the
    call's connection goes back to the pool when the call ends, so idle worker
    threads hold none; without one, each thread keeps its own (CONN_MAX_AGE).
    """

    def intercept_service(self, continuation, handler_call_details):
        close_old_connections()
        handler = continuation(handler_call_details)
        return wrap_calls(handler, _returning_connection) if _pooled() else handler


@contextmanager
def _returning_connection(context):
    try:
        yield
    finally:
        connection.close()


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
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers or settings.RTA_GRPC_WORKERS, thread_name_prefix="grpc"),
        interceptors=[DatabaseConnectionInterceptor(), MetricsInterceptor()],
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
    bound = server.add_insecure_port(f"{bind}:{port}" if ":" not in bind else f"[{bind}]:{port}")
    if not bound:
        raise RuntimeError(f"could not bind gRPC port {bind}:{port}")
    server.health_servicer = health_servicer
    server.service_names = names
    return server, bound
