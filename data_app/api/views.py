"""REST data endpoints: ``application/vnd.mat.protobuf+chunked`` of a session's data (spec §2, §8), and the
data-service interface of a data identity's stored chunks (spec §13, ``RTA_EXPOSE_DATA_SERVICE``).

``GET`` streams the chunks; ``HEAD`` answers with the same status and headers
and no body. Errors are JSON ``{"error": ...}`` (400 malformed channels,
times or data identity, 404 unknown session or data kind (or the data-service
interface switched off), 405 other methods, 406 an Accept header that does
not admit the chunked media type, 502/504 a data service behind the gateway
that fails or does not answer, 503 chunks moving under compaction on every
attempt).
"""

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from config_app.api.negotiation import accepts
from data_app.services import gateway
from data_app.services.channels import parse_channels
from data_app.services.data_service import read_data_identity, source_exists
from rta_core.errors import InvalidArgument, NotAcceptable, NotFound, ServiceError, excerpt
from rta_core.responses import json_error
from rta_kit import wire
from sessions_app.api.views import SessionDetailView
from sessions_app.services import listing

_METHODS = ("GET", "HEAD")


def _time_param(request, name):
    value = request.GET.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer number of nanoseconds") from None


def _check_accept(request):
    accept = request.headers.get("Accept", "")
    if not accepts(accept, wire.MEDIA_TYPE):
        raise NotAcceptable(
            f"data is served as {wire.MEDIA_TYPE} only, which the Accept header ({excerpt(accept)}) does not admit"
        )


def _error(request, message, status):
    response = json_error(message, status)
    if status == 405:
        response["Allow"] = ", ".join(_METHODS)
    if request.method == "HEAD":
        length = len(response.content)
        response.content = b""
        response["Content-Length"] = str(length)  # what GET would send
    return response


def _session_data(request, identity, kind):
    """Opens the session's data: its own identity, or its bindings' sources (``gateway``)."""

    def open_data(channels, start, end):
        authorization = request.headers.get("Authorization")  # forwarded to data services
        return gateway.open_session_data(
            identity, kind, channels, start, end, access=request.rta_access, authorization=authorization
        )

    return open_data


def _respond(request, kind, channels_expression, open_data):
    if request.method not in _METHODS:
        return _error(request, f"method {request.method} is not allowed", 405)
    asgi = isinstance(request, ASGIRequest)
    try:
        _check_accept(request)
        channels = parse_channels(channels_expression) if channels_expression is not None else None
        start, end = _time_param(request, "start"), _time_param(request, "end")
        stream = open_data(channels, start, end)
        if isinstance(stream, gateway.GatewayStream):
            stream.start(asgi)  # the data services answer (or fail: 502/504) before the response starts
    except ServiceError as exc:
        return _error(request, exc.message, exc.http_status)
    length = stream.wire_length()
    if request.method == "HEAD":
        stream.close()
        body = ()
    elif isinstance(stream, gateway.GatewayStream):
        body = stream.blocks() if asgi else iter(stream)  # blocks(): on the loop start() opened the reads on
    elif asgi:
        body = _blocks(stream)
    else:
        body = stream
    response = StreamingHttpResponse(body, content_type=wire.MEDIA_TYPE)
    response["Cache-Control"] = "no-store"
    if length is not None:  # known up front when every chunk goes out as stored
        response["Content-Length"] = str(length)
    return response


async def _blocks(stream):
    """The stream's blocks, each read in a worker thread while the one before is sent.

    Under ASGI Django collects a synchronous iterator into a list before sending
    it; an asynchronous one is sent block by block, and the server's flow
    control (``rta_site.http_server``) holds each send until the client has
    taken the block before, so a response of any size holds about two blocks
    in memory: the one being sent and the one read ahead.
    """
    next_block = sync_to_async(next, thread_sensitive=False)
    iterator = iter(stream)
    ahead = asyncio.ensure_future(next_block(iterator, None))
    try:
        # Shielded: a cancel (the client went away) must not leave a read running beside the close below.
        while (block := await asyncio.shield(ahead)) is not None:
            ahead = asyncio.ensure_future(next_block(iterator, None))
            yield block
    finally:
        if not ahead.done():  # the client went away mid-response: let the read in flight end first
            await asyncio.wait([ahead])
        if not ahead.cancelled():
            ahead.exception()  # retrieved: an error of a read nobody waits for is not worth a warning
        await sync_to_async(stream.close, thread_sensitive=False)()


# Read-only endpoints: exempt from CSRF so other methods get the JSON 405, not a CSRF page.
@csrf_exempt
def channel_data(request, identity, kind, channels):
    return _respond(request, kind, channels, _session_data(request, identity, kind))


@csrf_exempt
def events(request, identity):
    return _respond(request, "events", None, _session_data(request, identity, "events"))


# --- the data-service interface (spec §13): a data identity's chunks as stored, for gateways ---------


def _identity_data(request, identity, kind, source=None):
    access = request.rta_access
    return lambda channels, start, end: read_data_identity(
        identity, kind, channels, start, end, access=access, source=source
    )


def _data_service_off(request):
    """404 unless RTA_EXPOSE_DATA_SERVICE: data identities are private, served only where a deployment says so."""
    if settings.RTA_EXPOSE_DATA_SERVICE:
        return None
    return _error(request, "no such resource", 404)


@csrf_exempt
def data_service_channel_data(request, identity, kind, channels, source=None):
    """A data identity's chunks: this server's store, or the built-in source named in the path."""
    return _data_service_off(request) or _respond(
        request, kind, channels, _identity_data(request, identity, kind, source)
    )


@csrf_exempt
def data_service_events(request, identity, source=None):
    return _data_service_off(request) or _respond(
        request, "events", None, _identity_data(request, identity, "events", source)
    )


@csrf_exempt
def source_root(request, source):
    """A built-in source's health answer (GET / of a data service): 200 while this server serves it."""
    if (off := _data_service_off(request)) is not None:
        return off
    if request.method not in _METHODS:
        return _error(request, f"method {request.method} is not allowed", 405)
    if not source_exists(source):
        return _error(request, f"no built-in data source {excerpt(source)}", 404)
    return HttpResponse(b"" if request.method == "HEAD" else b"Healthy", content_type="text/plain; charset=utf-8")


@csrf_exempt
def data_service_unknown_kind(request, identity, kind, channels=None):
    """``/data/{dataIdentity}/...`` naming no data kind (or in the wrong shape); the identity is not echoed."""
    if (off := _data_service_off(request)) is not None:
        return off
    return _error(request, _unknown_kind_message("/data/{dataIdentity}", kind), 404)


@csrf_exempt
def unknown_kind(request, identity, kind, channels=None):
    """``/sessions/{identity}/data/...`` naming no data kind this server serves (or in the wrong shape).

    Identities may contain "/": a session whose identity is the whole path is served as such.
    """
    whole = f"{identity}/data/{kind}" + (f"/{channels}" if channels is not None else "")
    try:
        listing.get_session(whole, access=request.rta_access)
    except NotFound:
        pass
    else:
        return SessionDetailView.as_view()(request, identity=whole)
    return _error(request, _unknown_kind_message("/data", kind), 404)


def _unknown_kind_message(base, kind):
    """What a path under ``base`` naming ``kind`` should have been."""
    if kind == "events":
        return f"events are read at {base}/events (no channels)"
    if kind in ("timestamped", "periodic", "row"):
        return f"{kind} data is read at {base}/{kind}/{{channels}}"
    return f"unknown data kind {excerpt(kind)}: one of timestamped, periodic, row, events"
