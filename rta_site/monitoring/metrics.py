"""Prometheus metrics: HTTP requests by route, the HTTP server's limits, gRPC calls by method and code.

The data app reports its own figures (``data_app.metrics``); all are served by ``/metrics``.
"""

import functools
import re
import time
from contextlib import contextmanager

import grpc
from prometheus_client import Counter, Gauge, Histogram

from rta_site.grpc_calls import wrap_calls

HTTP_REQUESTS = Counter("rta_http_requests_total", "HTTP requests served", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "rta_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# The HTTP server's own limits (rta_site.http_server): connections it ended, and why
# (header_timeout, body_timeout, body_too_large, send_timeout, response_budget).
HTTP_CONNECTIONS_CLOSED = Counter(
    "rta_http_connections_closed_total", "HTTP connections the server ended on a limit", ["reason"]
)
HTTP_STALLED_BYTES = Gauge(
    "rta_http_stalled_response_bytes", "Response bytes held for HTTP clients that are not keeping up"
)
GRPC_CALLS = Counter("rta_grpc_calls_total", "gRPC calls handled", ["method", "code"])
GRPC_LATENCY = Histogram(
    "rta_grpc_call_duration_seconds",
    "gRPC call latency",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
)


_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _route(request):
    """The matched URL pattern, regular-expression routes written like path ones (``<identity>``)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return "/" + _GROUP.sub(r"<\1>", match.route or "").replace("^", "").replace("$", "")


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by the URL pattern (not the raw path)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        route = _route(request)
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts gRPC calls by method and status code, including streaming calls."""

    def __init__(self):
        self._wrapped = {}  # (method, handler) -> the handler timing its calls: made once per method

    def intercept_service(self, continuation, handler_call_details):
        method, handler = handler_call_details.method, continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method: answered UNIMPLEMENTED, and no cache entry per made-up name
        wrapped = self._wrapped.get((method, handler))
        if wrapped is None:

            @contextmanager
            def timed(context):
                started = time.perf_counter()
                try:
                    yield
                finally:
                    _record(method, context, started)

            wrapped = self._wrapped.setdefault((method, handler), wrap_calls(handler, timed))
        return wrapped


def _record(method, context, started):
    code = context.code() if hasattr(context, "code") else None
    calls, latency = _grpc_metrics(method, code.name if isinstance(code, grpc.StatusCode) else "OK")
    calls.inc()
    latency.observe(time.perf_counter() - started)


@functools.lru_cache(maxsize=4096)
def _grpc_metrics(method, code):
    # A labelled child is looked up under a lock on every ``labels()``: once per method and code is enough.
    return GRPC_CALLS.labels(method, code), GRPC_LATENCY.labels(method)
