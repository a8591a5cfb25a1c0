"""The one exception hierarchy of the service layers.

Each class carries the HTTP status the DRF handler answers with
(``rta_site.api_errors``) and the gRPC status the one gRPC interceptor aborts
with (``rta_site.grpc_errors``); transport adapters never map errors themselves.
"""

import grpc

# Longest excerpt of client input quoted in an error message: gRPC carries the
# message in trailing metadata (16 KiB in all), and logs should stay readable.
EXCERPT_CHARS = 80


def excerpt(value, limit=EXCERPT_CHARS):
    """``repr`` of ``value`` cut to about ``limit`` characters, for quoting input in messages."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}…({len(text)} chars)"


class ServiceError(Exception):
    """A request the service refuses; ``field`` names the argument concerned, when there is one."""

    http_status = 400
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message, field=None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(ServiceError):
    http_status = 400
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    http_status = 404
    grpc_status = grpc.StatusCode.NOT_FOUND


class NotAcceptable(ServiceError):
    http_status = 406
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class TooLarge(ServiceError):
    http_status = 413
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(ServiceError):
    http_status = 401
    grpc_status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    http_status = 403
    grpc_status = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    """A store or dependency that cannot serve now (the client may retry)."""

    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE


class UpstreamFailed(ServiceError):
    """A data service behind the gateway failed or could not be reached."""

    http_status = 502
    grpc_status = grpc.StatusCode.UNAVAILABLE


class UpstreamTimeout(ServiceError):
    """A data service behind the gateway did not answer in time."""

    http_status = 504
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED
