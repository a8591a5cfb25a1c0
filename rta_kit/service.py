"""A ready ASGI application serving the data-service interface (spec §13) from an adapter object.

::

    GET /                                                   200 (the gateway's health check)
    GET /rta/v2/data/{identity}/{timestamped|periodic|row}/{channels}?start=&end=
    GET /rta/v2/data/{identity}/events?start=&end=

``identity`` is one percent-encoded path segment: it is decoded from the raw
path (ASGI's ``path`` is already decoded, and an identity may hold ``/``).
``start``/``end`` are integer ns, inclusive, data time; either may be left
out. ``channels`` is a channel expression (``rta_core.channels``). Responses
are ``application/vnd.mat.protobuf+chunked`` (spec §8), LZ4-compressed,
streamed chunk by chunk as the adapter produces them; errors are JSON
``{"error": ...}``: 400 bad times, channels or identity encoding, 404 unknown
routes, 405 other methods (``GET`` and ``HEAD`` are served; ``HEAD`` checks
the request and does not call the adapter).

The adapter is any object with some of these methods (a missing one serves
no data of its kind: an empty 200)::

    periodic_chunks(identity, channels, start, end)
    timestamped_chunks(identity, channels, start, end)
    row_chunks(identity, channels, start, end)
    events(identity, start, end)

``channels`` is a ``rta_core.channels.ChannelSet`` (``channel in channels``;
``channels.ranges``), ``start``/``end`` ints or None. Each returns an iterable
or async iterable of chunks (``rta_kit.chunking.Chunk``, or anything with
``start``, ``end``, ``channel_ids`` and ``payload``); methods may be ``async``.
Plain (synchronous) methods and iterators run in worker threads, so they may
block on files or databases. A method that takes a ``context`` keyword
argument gets a ``RequestContext`` (the ``Authorization`` header the gateway
forwards, all headers).

Failures: an adapter that raises a ``rta_core.errors.ServiceError`` (e.g.
``NotFound("no such run")``) before the first chunk gets its status and
message; any other exception before the first chunk is a 500 with a generic
message (details go to the log only: identities are private). After the first
byte the response is aborted, never ended as if complete: an invalid frame
(header length -1, which every §8 reader refuses) is written, then the
connection is dropped by raising to the ASGI server (uvicorn, hypercorn,
``python -m rta_kit.serve``). daphne cannot drop a started response (the
client would wait for ever), so under daphne the response ends after the
invalid frame instead.
"""

import asyncio
import inspect
import json
import logging
import re
import struct
import sys
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote_to_bytes

from rta_core.channels import parse_channels
from rta_core.errors import InvalidArgument, ServiceError, excerpt
from rta_kit import wire
from rta_kit.grid import INT64_MAX, INT64_MIN

log = logging.getLogger(__name__)

KINDS = ("timestamped", "periodic", "row")
METHODS = ("GET", "HEAD")
ABORT_FRAME = struct.pack("<i", -1)  # a negative header length: no §8 reader takes it for data
BATCH_BYTES = 256 * 1024  # framed bytes taken from a synchronous adapter per trip to its thread
_INTEGER = re.compile(r"-?[0-9]+")
_PREFIX = [b"", b"rta", b"v2", b"data"]
_DONE = object()


@dataclass(frozen=True)
class RequestContext:
    """What an adapter method with a ``context`` parameter is told about the request."""

    kind: str
    authorization: str | None  # the Authorization header as received (the gateway forwards the client's)
    headers: dict = field(repr=False)  # lower-case name -> value (the last one of repeated headers)


class ResponseAborted(Exception):
    """Raised to the ASGI server to drop a response the adapter failed in after its first byte."""


class DataServiceApp:
    """The ASGI application for ``adapter`` (see the module documentation).

    ``compression``: ``wire.COMPRESSION_LZ4`` (default) or ``wire.COMPRESSION_NONE``.
    ``abort``: what to do when the adapter fails after the first byte: ``"raise"``
    (drop the connection), ``"end"`` (end the response after the invalid
    frame), ``"auto"`` (``"end"`` under daphne, else ``"raise"``).
    """

    def __init__(self, adapter, compression=wire.COMPRESSION_LZ4, abort="auto"):
        if abort not in ("auto", "raise", "end"):
            raise ValueError("abort must be auto, raise or end")
        self.adapter = adapter
        self.compression = compression
        self.abort = abort
        self._methods = {}
        for kind in (*KINDS, "events"):
            method = getattr(adapter, "events" if kind == "events" else f"{kind}_chunks", None)
            if method is not None:
                self._methods[kind] = (method, _takes_context(method))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        segments = raw_path.split(b"/")
        if raw_path == b"/":
            if method not in METHODS:
                await _json(send, 405, f"method {method} is not allowed", method)
                return
            await _respond(send, 200, b"text/plain; charset=utf-8", b"" if method == "HEAD" else b"Healthy")
            return
        route = _route(segments)
        if route is None:
            await _json(
                send,
                404,
                "not found: the data service serves /rta/v2/data/{identity}/{timestamped|periodic|row}/{channels} "
                "and /rta/v2/data/{identity}/events",
                method,
            )
            return
        if method not in METHODS:
            await _json(send, 405, f"method {method} is not allowed", method)
            return
        kind, identity_segment, channels_segment = route
        try:
            identity = _decoded(identity_segment, "data identity")
            if identity == "":
                raise InvalidArgument("the data identity is empty")
            channels = None
            if channels_segment is not None:
                channels = parse_channels(_decoded(channels_segment, "channel expression"))
            start, end = _bounds(scope.get("query_string", b""))
        except ServiceError as exc:
            await _json(send, exc.http_status, exc.message, method)
            return
        if method == "HEAD":
            await _respond(send, 200, wire.MEDIA_TYPE.encode(), b"", head=True)
            return
        context = RequestContext(kind, _header(scope, b"authorization"), _headers(scope))
        await self._stream(send, receive, kind, identity, channels, start, end, context)

    # --- streaming -----------------------------------------------------------------------------

    async def _stream(self, send, receive, kind, identity, channels, start, end, context):
        disconnected = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, disconnected))
        writer = wire.ChunkStreamWriter()
        started = False
        source = blocks = None
        try:
            try:
                source = await self._open(kind, identity, channels, start, end, context)
                blocks = self._blocks(source, writer)
                async for block in blocks:
                    if not started:
                        await _start(send, 200, wire.MEDIA_TYPE.encode())
                        started = True
                    if disconnected.is_set() or not await _send_body(send, block, disconnected):
                        return  # the client went away: nothing more to do
            except Exception as exc:  # the adapter failed
                await self._failed(send, exc, started, kind, disconnected)
                return
            if not started:
                await _start(send, 200, wire.MEDIA_TYPE.encode())
            await _send_body(send, b"", disconnected, more=False)
        finally:
            watcher.cancel()
            if blocks is not None:
                await blocks.aclose()
            if source is not None:
                await _close(source)

    async def _open(self, kind, identity, channels, start, end, context):
        entry = self._methods.get(kind)
        if entry is None:
            return ()
        method, takes_context = entry
        args = (identity, start, end) if kind == "events" else (identity, channels, start, end)
        kwargs = {"context": context} if takes_context else {}
        if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
            result = method(*args, **kwargs)
        else:
            result = await asyncio.to_thread(method, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return () if result is None else result

    async def _blocks(self, source, writer):
        """Framed chunks of ``source``: one block per chunk (sync sources: a batch per thread trip)."""
        compression = self.compression
        if hasattr(source, "__aiter__"):
            async for chunk in source:
                yield _frame(writer, chunk, compression)
            return
        iterator = iter(source)
        while True:
            blocks, failure = await asyncio.to_thread(_batch, iterator, writer, compression)
            for block in blocks:
                yield block
            if failure is _DONE:
                return
            if failure is not None:
                raise failure

    async def _failed(self, send, exc, started, kind, disconnected):
        if not started:
            if isinstance(exc, ServiceError):
                await _json(send, exc.http_status, exc.message, "GET")
                return
            log.error("data adapter failed serving %s data", kind, exc_info=exc)
            await _json(send, 500, f"the data adapter failed ({type(exc).__name__})", "GET")
            return
        log.error("data adapter failed mid-response serving %s data: response aborted", kind, exc_info=exc)
        if disconnected.is_set() or not await _send_body(send, ABORT_FRAME, disconnected):
            return
        mode = self.abort
        if mode == "auto":
            # daphne leaves a started response open when its application raises (the client would
            # wait for ever, and daphne's clean-up loop stops): end it after the invalid frame.
            mode = "end" if "daphne.server" in sys.modules else "raise"
        if mode == "end":
            await _send_body(send, b"", disconnected, more=False)
            return
        raise ResponseAborted("the data adapter failed after the response started") from exc


def create_app(adapter, **options):
    """The ASGI application serving ``adapter`` (``DataServiceApp(adapter, **options)``)."""
    return DataServiceApp(adapter, **options)


# --- helpers --------------------------------------------------------------------------------------


def _takes_context(method):
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "context" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _route(segments):
    """``(kind, identity segment, channels segment or None)`` of a data path, else None."""
    if segments[:4] != _PREFIX:
        return None
    if len(segments) == 6 and segments[5] == b"events":
        return "events", segments[4], None
    if len(segments) == 7 and segments[5].decode("latin-1") in KINDS:
        return segments[5].decode("latin-1"), segments[4], segments[6]
    return None


def _decoded(segment, what):
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"the {what} is not percent-encoded UTF-8") from None


def _bounds(query_string):
    try:
        query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise InvalidArgument("malformed query string") from None
    values = []
    for name in ("start", "end"):
        given = query.get(name, [""])
        text = given[-1]
        if text == "":
            values.append(None)
            continue
        if not _INTEGER.fullmatch(text) or not INT64_MIN <= int(text) <= INT64_MAX:
            raise InvalidArgument(f"{name} must be an integer number of nanoseconds (int64), not {excerpt(text)}")
        values.append(int(text))
    start, end = values
    if start is not None and end is not None and start > end:
        raise InvalidArgument(f"start {start} is after end {end}")
    return start, end


def _headers(scope):
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())}


def _header(scope, wanted):
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def _frame(writer, chunk, compression):
    return writer.chunk(chunk.start, chunk.end, list(chunk.channel_ids), chunk.payload, compression)


def _batch(iterator, writer, compression):
    """Framed chunks from a synchronous iterator, up to ``BATCH_BYTES``: ``(blocks, _DONE | exception | None)``."""
    blocks, size = [], 0
    try:
        while size < BATCH_BYTES:
            chunk = next(iterator, _DONE)
            if chunk is _DONE:
                return blocks, _DONE
            block = _frame(writer, chunk, compression)
            blocks.append(block)
            size += len(block)
    except Exception as exc:  # handed to the event loop, which fails the response
        return blocks, exc
    return blocks, None


async def _send_body(send, body, disconnected, more=True):
    """Send a body message; False (and ``disconnected`` set) when the client has gone away."""
    try:
        await send({"type": "http.response.body", "body": body, "more_body": more})
    except OSError:  # some servers raise on a send to a closed connection
        disconnected.set()
        return False
    # A send need not suspend: let the server's connection-lost callback (and our watcher) run.
    await asyncio.sleep(0)
    return not disconnected.is_set()


async def _close(source):
    if hasattr(source, "aclose"):
        try:
            await source.aclose()
        except Exception:
            log.warning("closing the data adapter's iterator failed", exc_info=True)
    elif hasattr(source, "close"):
        try:
            await asyncio.to_thread(source.close)
        except Exception:
            log.warning("closing the data adapter's iterator failed", exc_info=True)


async def _watch_disconnect(receive, disconnected):
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _start(send, status, content_type, extra=()):
    headers = [(b"content-type", content_type), (b"cache-control", b"no-store"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _respond(send, status, content_type, body, head=False, extra=()):
    await _start(send, status, content_type, extra)
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})


async def _json(send, status, message, method):
    body = json.dumps({"error": message}).encode()
    extra = [(b"allow", ", ".join(METHODS).encode())] if status == 405 else []
    extra.append((b"content-length", str(len(body)).encode()))
    await _respond(send, status, b"application/json", body, head=method == "HEAD", extra=extra)
