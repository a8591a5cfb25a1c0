"""Requests parsed inside the call, so bytes that are no request are the client's mistake.

gRPC parses each request with the method handler's ``request_deserializer``
before the handler runs; bytes that do not parse (a truncated varint, wire
type 7, noise) end the call INTERNAL "Exception deserializing request!" and
log an ERROR with a traceback, whoever sent them. ``RequestParsingInterceptor``
hands gRPC a handler that takes the raw bytes and parses them in the call
instead, raising ``InvalidArgument``, which the one error interceptor
(``rta_site.grpc_errors``) answers like any other: it must sit inside it.
Handlers that already take raw bytes (``WriteDataStream``) are left alone.
"""

import grpc
from google.protobuf.message import DecodeError

from rta_core.errors import InvalidArgument


class RequestParsingInterceptor(grpc.ServerInterceptor):
    """Every handler with a request deserializer parses its requests itself (must sit inside ErrorInterceptor)."""

    def __init__(self):
        self._wrapped = {}  # handler -> the same taking raw bytes: made once per method

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            wrapped = self._wrapped.setdefault(handler, parsing_requests(handler))
        return wrapped


def parsing_requests(handler):
    """``handler`` taking raw request bytes and parsing them in the call (InvalidArgument if they do not parse)."""
    parse = _parser(handler.request_deserializer)

    def one(behaviour):
        def call(raw, context):
            return behaviour(parse(raw), context)

        return call

    def each(behaviour):
        def call(raws, context):
            return behaviour((parse(raw, index) for index, raw in enumerate(raws)), context)

        return call

    for kind, wrap in (("unary_unary", one), ("unary_stream", one), ("stream_unary", each), ("stream_stream", each)):
        behaviour = getattr(handler, kind)
        if behaviour:
            return handler._replace(**{kind: wrap(behaviour), "request_deserializer": None})
    return handler


def _parser(deserialize):
    what = _message_name(deserialize)

    def parse(raw, index=None):
        try:
            return deserialize(raw)
        except DecodeError:
            where = "the request" if index is None else f"request message {index}"
            raise InvalidArgument(f"{where} is not a valid {what} (the bytes do not parse)") from None

    return parse


def _message_name(deserialize):
    """The full name of the message ``deserialize`` (a message class's ``FromString``) makes, if known."""
    descriptor = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", None) or "request message"
