"""Reading a data service over HTTP (spec §13): the pooled client, request URLs, failures naming the source.

One ``httpx.AsyncClient`` per event loop (under ``serve``: daphne's one loop),
so every gateway request of the process shares its pool of HTTP/1.1
keep-alive connections. A response is read as it arrives (``aiter_raw``) and
parsed incrementally (``rta_kit.chunk_reader``): never a whole response in
memory, and a data service is never read faster than the gateway's own
client takes the data (TCP flow control does the rest).

Failures name the binding's *source* only: the data identity and the data
service's URL are private. Unreachable or a non-200 answer is
``UpstreamFailed`` (502), no answer within ``RTA_DATA_SERVICE_TIMEOUT``
(connecting, or between two reads) ``UpstreamTimeout`` (504); the log gets
the source and the cause, not the identity.
"""

import asyncio
import logging
import weakref
from urllib.parse import quote

import httpcore
import httpx
from django.conf import settings

from rta_core.errors import UpstreamFailed, UpstreamTimeout
from rta_kit import wire
from rta_kit.chunk_reader import ChunkFormatError, ChunkReader

log = logging.getLogger(__name__)

_clients = weakref.WeakKeyDictionary()  # event loop -> its AsyncClient

# httpcore reads a response body 64 KiB at a time, each read a trip through anyio (pausing and resuming the
# socket), h11 and httpx: a data response is large, and taking whatever has arrived, up to this, costs far less.
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = 4 << 20


def data_url(base, identity, kind, channels=None):
    """``{base}/rta/v2/data/{identity}/{kind}[/{channels}]``, the identity one percent-encoded path segment.

    ``/``, ``%``, spaces, quotes and everything but unreserved characters are
    encoded; a segment of only dots is too, lest a client or proxy resolve it
    as ``.`` or ``..``.
    """
    segment = quote(identity, safe="")
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return f"{base.rstrip('/')}/rta/v2/data/{segment}/{kind}" + (f"/{channels}" if channels else "")


def channel_expression(ranges):
    """A channel expression (spec §8, hexadecimal) for inclusive ``(low, high)`` ranges."""
    return ",".join(f"{low:X}" if low == high else f"{low:X}-{high:X}" for low, high in ranges)


def new_client(timeout=None):
    """A client for data services: HTTP/1.1 keep-alive, no redirects, no proxies from the environment."""
    seconds = settings.RTA_DATA_SERVICE_TIMEOUT if timeout is None else timeout
    return httpx.AsyncClient(
        timeout=httpx.Timeout(seconds),  # connect, each read, each write, waiting for a pooled connection
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        follow_redirects=False,
        trust_env=False,
    )


def shared_client():
    """This event loop's pooled client."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = new_client()
    return client


def _failure(source, exc, action):
    if isinstance(exc, httpx.TimeoutException):
        seconds = settings.RTA_DATA_SERVICE_TIMEOUT
        return UpstreamTimeout(f"data service {source!r} did not answer within {seconds:g} s")
    if isinstance(exc, ChunkFormatError):
        return UpstreamFailed(f"data service {source!r} sent a malformed chunk stream")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamFailed(f"data service {source!r} could not be reached")
    return UpstreamFailed(f"data service {source!r} failed while {action}")


class RemoteRead:
    """One GET of a data service: ``open`` it (status checked), then iterate ``chunk_lists``; ``aclose`` always."""

    def __init__(self, source, url, params, authorization=None):
        self.source, self.url, self.params = source, url, params
        self.headers = {"Accept": wire.MEDIA_TYPE}
        if authorization:
            self.headers["Authorization"] = authorization  # the caller's token, for the data service to check
        self.response = None
        self.opened_at = None
        self.consumed = False

    async def open(self, client):
        await self.aclose()
        request = client.build_request("GET", self.url, params=self.params, headers=self.headers)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.warning("data service %r: %s: %s", self.source, type(exc).__name__, exc)
            raise _failure(self.source, exc, "answering") from None
        if response.status_code != 200:
            await response.aclose()
            log.warning("data service %r answered HTTP %d", self.source, response.status_code)
            raise UpstreamFailed(f"data service {self.source!r} answered HTTP {response.status_code}")
        self.response, self.opened_at, self.consumed = response, asyncio.get_running_loop().time(), False

    async def chunk_lists(self):
        """Lists of ``ReceivedChunk``s as the body arrives (each non-empty); raises ``UpstreamFailed`` /
        ``UpstreamTimeout`` when the body fails or ends inside a chunk."""
        self.consumed = True
        reader = ChunkReader()
        try:
            async for piece in self.response.aiter_raw():
                chunks = reader.feed(piece)
                if chunks:
                    yield chunks
            reader.close()
        except (httpx.HTTPError, ChunkFormatError) as exc:
            log.warning("data service %r: %s while sending data: %s", self.source, type(exc).__name__, exc)
            raise _failure(self.source, exc, "sending data") from None

    async def aclose(self):
        response, self.response = self.response, None
        if response is not None:
            await response.aclose()
