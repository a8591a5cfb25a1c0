"""Bearer tokens on gRPC: metadata ``authorization: Bearer <token>``, read or write scope per method.

Reads are the methods named Get*, List*, Query*, Has* and DataReader's
Read*Stream; writes are CreateOrUpdateSession, Put*, Delete* and DataWriter's
WriteDataStream (``required_scope``). The health service and server reflection
stay open. The interceptor sits inside ``ErrorInterceptor`` (after it in the list): it
raises ``Unauthenticated`` / ``PermissionDenied`` and the error interceptor
answers UNAUTHENTICATED / PERMISSION_DENIED with their message. For the call's
duration the caller's ``Access`` is current (``rta_core.access.current_access``)
in the call's thread, for servicers to pass on to services.
"""

from contextlib import contextmanager

import grpc

from rta_core.access import reset_current_access, set_current_access
from rta_site.auth.authenticate import READ, WRITE, authenticate, enabled, require
from rta_site.grpc_calls import wrap_calls

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
_READ_VERBS = ("Get", "List", "Query", "Has", "Read")
_WRITE_VERBS = ("CreateOrUpdate", "Put", "Delete", "Write")


def required_scope(method):
    """READ, WRITE, ``None`` for an open service, or ``WRITE`` for a method no rule names.

    ``method`` is the full name gRPC gives (``/package.Service/Method``).
    """
    service, _, name = method.lstrip("/").rpartition("/")
    if service in OPEN_SERVICES:
        return None
    if name.startswith(_READ_VERBS):
        return READ
    return WRITE  # _WRITE_VERBS, and anything new until it is classified (tests check every method is)


def classified(method):
    """Whether a rule names ``method`` explicitly (tests walk every registered method with it)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service in OPEN_SERVICES or name.startswith(_READ_VERBS + _WRITE_VERBS)


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self):
        self._wrapped = {}  # (method, handler) -> the wrapped handler: made once per method

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not enabled():
            return handler
        method = handler_call_details.method
        need = required_scope(method)
        if need is None:
            return handler
        wrapped = self._wrapped.get((method, handler))
        if wrapped is None:

            def around(context):
                return _authenticated(context, need)

            wrapped = self._wrapped.setdefault((method, handler), wrap_calls(handler, around))
        return wrapped


@contextmanager
def _authenticated(context, need):
    authorization = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            authorization = value
            break
    access = authenticate(authorization)
    require(access, need)
    token = set_current_access(access)
    try:
        yield
    finally:
        reset_current_access(token)


__all__ = ["AuthInterceptor", "READ", "WRITE", "required_scope", "classified"]
