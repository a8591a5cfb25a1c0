"""Reading a data service over HTTP (spec §13): the pooled client, request URLs, failures naming the source.

One ``Client`` (an ``aiohttp.ClientSession``) per event loop (under
``serve``: daphne's one loop), so every gateway request of the process shares
its pool of HTTP/1.1 keep-alive connections. A response is read as it
arrives and parsed incrementally (``rta_kit.chunk_reader``): never a whole
response in memory, and a data service is never read faster than the
gateway's own client takes the data (aiohttp stops reading the socket while
``READ_BUFFER`` bytes wait, and TCP's flow control does the rest).

Why aiohttp rather than httpx: a data response is large and the gateway
relays it as fast as it can, so the cost per received byte counts. httpx
(h11, httpcore, anyio) copies each piece twice and goes through several
layers per read: it took about 3× the CPU of aiohttp (C parser, pieces
handed over as received) to receive the same 256 MiB on loopback
(docs/benchmarks.md, Gateway).

Failures name the binding's *source* only: the data identity and the data
service's URL are private. Unreachable or a non-200 answer is
``UpstreamFailed`` (502), no answer within ``RTA_DATA_SERVICE_TIMEOUT``
(connecting, or between two reads) ``UpstreamTimeout`` (504); the log gets
the source and the cause, not the identity.
"""

import asyncio
import logging
import weakref
from urllib.parse import quote, urlencode

import aiohttp
from django.conf import settings
from yarl import URL

from rta_core.errors import UpstreamFailed, UpstreamTimeout
from rta_kit import wire
from rta_kit.chunk_reader import ChunkFormatError, ChunkReader

log = logging.getLogger(__name__)

_clients = weakref.WeakKeyDictionary()  # event loop -> its Client
READ_BUFFER = 4 << 20  # bytes of a response held before reading its socket pauses (aiohttp's read_bufsize)


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


class Client:
    """The pooled HTTP client for data services (an ``aiohttp.ClientSession``); ``aclose`` when done."""

    def __init__(self, timeout=None):
        seconds = settings.RTA_DATA_SERVICE_TIMEOUT if timeout is None else timeout
        self.session = aiohttp.ClientSession(
            # Connecting (a pooled connection included) and each wait for data; never the whole response.
            timeout=aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            trust_env=False,  # no proxies from the environment
            auto_decompress=False,
            read_bufsize=READ_BUFFER,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )

    @property
    def is_closed(self):
        return self.session.closed

    async def aclose(self):
        await self.session.close()


def new_client(timeout=None):
    """A client for data services: HTTP/1.1 keep-alive, no redirects, no proxies from the environment."""
    return Client(timeout)


def shared_client():
    """This event loop's pooled client."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = new_client()
    return client


def _failure(source, exc, action):
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's timeouts are TimeoutErrors
        seconds = settings.RTA_DATA_SERVICE_TIMEOUT
        return UpstreamTimeout(f"data service {source!r} did not answer within {seconds:g} s")
    if isinstance(exc, ChunkFormatError):
        return UpstreamFailed(f"data service {source!r} sent a malformed chunk stream")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailed(f"data service {source!r} could not be reached")
    return UpstreamFailed(f"data service {source!r} failed while {action}")


_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


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
        query = urlencode(self.params)
        url = URL(self.url + ("?" + query if query else ""), encoded=True)  # as built: not re-quoted
        try:
            response = await client.session.get(url, headers=self.headers, allow_redirects=False)
        except _ERRORS as exc:
            detail = "" if isinstance(exc, aiohttp.InvalidURL) else f": {exc}"  # that one quotes the URL
            log.warning("data service %r: %s%s", self.source, type(exc).__name__, detail)
            raise _failure(self.source, exc, "answering") from None
        if response.status != 200:
            response.close()
            log.warning("data service %r answered HTTP %d", self.source, response.status)
            raise UpstreamFailed(f"data service {self.source!r} answered HTTP {response.status}")
        self.response, self.opened_at, self.consumed = response, asyncio.get_running_loop().time(), False

    async def chunk_lists(self, relayable=None):
        """Lists of ``ReceivedChunk``s as the body arrives (each non-empty), and ``chunk_reader.Run``s of those
        ``relayable`` accepts (see ``ChunkReader.feed``); raises ``UpstreamFailed`` / ``UpstreamTimeout`` when
        the body fails or ends inside a chunk."""
        self.consumed = True
        reader = ChunkReader()
        try:
            # Each piece as received (iter_any would join the pieces waiting: a copy for nothing).
            async for piece, _ in self.response.content.iter_chunks():
                chunks = reader.feed(piece, relayable)
                if chunks:
                    yield chunks
            reader.close()
        except (*_ERRORS, ChunkFormatError) as exc:
            log.warning("data service %r: %s while sending data: %s", self.source, type(exc).__name__, exc)
            raise _failure(self.source, exc, "sending data") from None

    async def aclose(self):
        response, self.response = self.response, None
        if response is not None:
            if response.content.is_eof():
                response.release()  # read to the end: the connection goes back to the pool
            else:
                response.close()  # unread data on the connection: closed, never reused
