"""Reading a built-in source (``data_app.sources``) in-process: for the gateway and for other gateways.

``SourceRead`` has ``remote.RemoteRead``'s interface, so the gateway composes
a binding served by a built-in source exactly like one served over HTTP
(offset, clipping, re-mapping, merged windows), without the HTTP hop: the
source's chunks (uncompressed) are taken in worker threads, a batch at a
time, as the response wants them. ``SourceStream`` frames a source's chunks
as a response body, for ``/rta/v2/sources/{source}/rta/v2/data/...``.

Failures: an identity the source refuses (``ServiceError`` with a 4xx status:
not found, outside its root) is *no data*, not an error, in a composed
session, and its 4xx from ``SourceStream`` (a data service says so); a store failing is ``UpstreamFailed`` naming the source only (the
identity is private, so the log gets the source and the exception type).
"""

import asyncio
import logging

from data_app.services.blocks import ResponseBlocks
from rta_core.errors import ServiceError, UpstreamFailed
from rta_kit import wire
from rta_kit.chunk_reader import ReceivedChunk

log = logging.getLogger(__name__)

BATCH_BYTES = 1 << 20  # payload bytes taken from a source per trip to a worker thread


def received(chunk):
    """A kit ``Chunk`` as the gateway's ``ReceivedChunk`` (uncompressed)."""
    payload = chunk.payload  # bytes-like, not copied: it is framed (joined into a block) next
    return ReceivedChunk(chunk.start, chunk.end, list(chunk.channel_ids), wire.COMPRESSION_NONE, len(payload), payload)


def _failure(source, exc):
    log.error("data source %r failed: %s", source, type(exc).__name__, exc_info=exc)
    return UpstreamFailed(f"data source {source!r} failed while reading data")


class _Chunks:
    """A source's chunk iterator taken a batch at a time (an identity the source refuses: no chunks)."""

    def __init__(self, name, prepared, kind, channels, start, end):
        self.name = name
        self._open = lambda: iter(prepared.chunks(kind, channels, start, end))
        self._iterator = None

    def batch(self, limit=BATCH_BYTES, refusals_raise=False):
        """The next chunks (``ReceivedChunk``s), about ``limit`` payload bytes; [] at the end. A refused
        identity ends the chunks, or with ``refusals_raise`` raises its 4xx ``ServiceError``."""
        if self._iterator is None:
            self._iterator = self._open()
        out, size = [], 0
        try:
            for chunk in self._iterator:
                if not len(chunk.payload):
                    continue
                out.append(received(chunk))
                size += len(chunk.payload)
                if size >= limit:
                    break
        except ServiceError as exc:
            if exc.http_status >= 500 or refusals_raise:
                raise
            log.info("data source %r refused an identity: %s", self.name, type(exc).__name__)
            self._iterator = iter(())
        except Exception as exc:
            raise _failure(self.name, exc) from None
        return out

    def close(self):
        iterator, self._iterator = self._iterator, None
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class SourceRead:
    """One read of a built-in source for ``gateway.GatewayStream``: ``open``, ``chunk_lists``, ``aclose``."""

    def __init__(self, source, prepared, kind, channels, start, end):
        self.source = source
        self._args = (source, prepared, kind, channels, start, end)
        self.response = None  # the open _Chunks (named as RemoteRead's, which the gateway checks)
        self.opened_at = None
        self.consumed = False
        self._first = None

    async def open(self, client=None):
        """Start reading: the first batch is read now, so a failing store fails before the response starts."""
        await self.aclose()
        loop = asyncio.get_running_loop()
        chunks = _Chunks(*self._args)
        self._first = await loop.run_in_executor(None, chunks.batch)
        self.response, self.opened_at, self.consumed = chunks, loop.time(), False

    async def chunk_lists(self):
        self.consumed = True
        loop = asyncio.get_running_loop()
        batch, self._first = self._first, None
        while batch:
            yield batch
            batch = await loop.run_in_executor(None, self.response.batch)

    async def aclose(self):
        chunks, self.response = self.response, None
        self._first = None
        if chunks is not None:
            await asyncio.get_running_loop().run_in_executor(None, chunks.close)


class SourceStream:
    """A source's chunks of one identity as a response body (blocks of framed chunks); read it in one thread."""

    def __init__(self, name, prepared, kind, channels, start, end):
        self._chunks = _Chunks(name, prepared, kind, channels, start, end)
        # Read before the response starts: a failing store, or a refused identity's 4xx, is its status.
        self._first = self._chunks.batch(refusals_raise=True)

    def wire_length(self):
        return None

    def __iter__(self):
        out = ResponseBlocks()
        batch, self._first = self._first, None
        try:
            while batch:
                for c in batch:
                    if out.add(c.start_time, c.end_time, c.channel_ids, c.compression, c.unpacked_length, c.packed):
                        yield out.take()
                batch = self._chunks.batch()
            if out.size:
                yield out.take()
        finally:
            self.close()

    def close(self):
        self._chunks.close()
