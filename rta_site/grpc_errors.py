"""The one mapping of errors to gRPC status codes, for every service on the port.

Servicers raise the service layer's errors (``rta_core.errors``); this
interceptor aborts each call with the error's own ``grpc_status``. A value the
database cannot hold is the client's (INVALID_ARGUMENT); anything unexpected is
logged with its traceback and answered INTERNAL, never UNKNOWN.

Services quote client input as short excerpts (``rta_core.errors.excerpt``);
as a last defence a message is cut to ``MAX_DETAILS_CHARS`` here: gRPC carries
it in trailing metadata (16 KiB in all, percent-encoded), and a longer one
reaches the client as RESOURCE_EXHAUSTED "Stream removed" instead of its status.
"""

import logging
from contextlib import contextmanager

import grpc
from django.db import DataError

from rta_core.errors import ServiceError
from rta_site.grpc_calls import wrap_calls

log = logging.getLogger(__name__)

MAX_DETAILS_CHARS = 1000


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions escaping a handler to status codes (must sit inside the metrics interceptor)."""

    def __init__(self):
        self._wrapped = {}  # (method, handler) -> the wrapped handler: made once per method

    def intercept_service(self, continuation, handler_call_details):
        method, handler = handler_call_details.method, continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrapped.get((method, handler))
        if wrapped is None:

            def around(context):
                return _mapped_errors(context, method)

            wrapped = self._wrapped.setdefault((method, handler), wrap_calls(handler, around))
        return wrapped


@contextmanager
def _mapped_errors(context, method):
    try:
        yield
    except ServiceError as exc:
        context.abort(exc.grpc_status, _bounded(exc.message))
    except DataError as exc:
        # A value the database column cannot hold (too long, out of range): the client's data.
        # Only the first line: the rest of PostgreSQL's message quotes the SQL.
        reason = (str(exc).strip().splitlines() or ["invalid value"])[0]
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"value not storable: {reason[:200]}")
    except grpc.RpcError:
        raise  # the client went away (reading a cancelled request stream): nobody to answer
    except Exception:
        if _already_answered(context):
            raise  # the handler aborted (or set) its status itself: keep it
        log.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, "internal server error")


def _bounded(message):
    """``message`` cut to ``MAX_DETAILS_CHARS`` characters."""
    if len(message) <= MAX_DETAILS_CHARS:
        return message
    return f"{message[: MAX_DETAILS_CHARS - 1]}…"


def _already_answered(context):
    code = context.code() if hasattr(context, "code") else None
    return code is not None
