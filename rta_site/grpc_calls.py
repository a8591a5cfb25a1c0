"""Running every call of a gRPC method handler inside a context manager, whatever its kind."""

_KINDS = ("unary_unary", "stream_unary", "unary_stream", "stream_stream")


def wrap_calls(handler, around):
    """``handler`` with each call run inside ``around(context)``.

    Streaming responses stay inside it until the stream ends, so what ``around``
    does on exit (record the status, release the connection) sees the whole call.
    """
    if handler is None:
        return None

    def unary(behaviour):
        def call(request, context):
            with around(context):
                return behaviour(request, context)

        return call

    def streaming(behaviour):
        def call(request, context):
            with around(context):
                yield from behaviour(request, context)

        return call

    for kind in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour:
            wrap = streaming if kind.endswith("_stream") else unary
            return handler._replace(**{kind: wrap(behaviour)})
    return handler
