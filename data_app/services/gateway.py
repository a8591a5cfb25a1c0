"""The gateway: a session's data composed from the sources its bindings name (spec §13).

``open_session_data`` is what the REST data endpoints call. A session none of
whose bindings names a source listed in ``RTA_DATA_SERVICES`` (and a session
without bindings) is read from this server's store as before
(``bindings.read_bound``, a ``reader.ChunkStream``). Otherwise the answer is
a ``GatewayStream``:

- each binding is one *part* of the response, in order of its session start
  time: a local binding's chunks from the store (``reader.ChunkStream``), a
  remote binding's from one GET of its data service
  (``remote.data_url``) for exactly the data channels it maps from the
  requested session channels and the request's bounds minus its offset,
  intersected with its window. Channels may interleave (§8); within a session
  channel the parts follow each other in time, since two bindings feeding one
  channel over disjoint times are served in time order, and channels two
  bindings feed over overlapping times are served as merged windows after the
  parts (below);
- a remote chunk is routed by the same rules as a stored one
  (``bindings.Composition``): one that needs no transformation is relayed as
  received (its payload byte for byte; only its ``ChunkTransferHeader`` is
  written afresh, its times being deltas against the previous chunk of the
  response); any other goes through ``rta_kit.transforms`` exactly as a
  stored chunk does, in a worker thread, a batch at a time while the next is
  read; emptied chunks are left out;
- chunks for merged windows are held in a temporary file (the spool), not in
  memory, and served last through ``reader.ChunkStream`` with the local ones.

Flow control: the body is an async generator of blocks; daphne's flow
control (``rta_site.http_server``) holds each block until the client has
taken the one before, and a data service is read only as blocks are wanted,
so memory stays about two blocks, one received piece and one chunk per
response whatever its size.

Failures: every data service read is opened (status checked) before the
response starts, so an unreachable, failing or silent data service is a JSON
502/504 naming its source. A failure after that (a data service failing
midway) cannot change the status sent: the body then ends with an invalid
frame (header length -1, which every §8 reader refuses) and the generator
raises, which makes the server drop the connection, so a client never sees a
truncated body end as if complete.
"""

import asyncio
import os
import tempfile

from asgiref.sync import async_to_sync
from django.conf import settings

from data_app.services import remote
from data_app.services.bindings import Composition, read_bound, session_bindings
from data_app.services.blocks import ResponseBlocks
from data_app.services.channels import ChannelSet
from data_app.services.source_read import SourceRead
from data_app.sources import registry
from data_app.store import reader
from rta_core.access import Access
from rta_kit import transforms, wire
from rta_kit.chunk_reader import ChunkReader, ReceivedChunk, Run

TRANSFORM_BATCH_BYTES = 512 << 10  # unpacked bytes of remote chunks transformed per worker-thread call
HELD_SECONDS = 5.0  # a read opened up front but reached later than this is requested afresh
INVALID_FRAME = b"\xff\xff\xff\xff"  # header length -1: ends a failed body so that no reader takes it as complete
_READS = (remote.RemoteRead, SourceRead)  # a part read as it arrives (a data service, a built-in source)


def open_session_data(
    identity, kind, channels=None, start=None, end=None, access=Access.ANONYMOUS_FULL, authorization=None
):
    """The session's ``kind`` data for session channels ``channels`` within ``start``/``end`` (session time):
    a ``reader.ChunkStream`` when every binding is local, else a ``GatewayStream`` (call ``start`` before
    reading it). ``authorization`` (the request's header) is forwarded to data services."""
    reader.check_request(kind, start, end)
    bindings = session_bindings(identity, access)
    services, sources = settings.RTA_DATA_SERVICES, registry.configured()
    if not any(b.source in services or b.source in sources for b in bindings):
        return read_bound(identity, bindings, kind, channels, start, end)
    return GatewayStream(kind, bindings, services, channels, start, end, authorization, sources)


class GatewayStream:
    """A response composed from local and remote bindings; see the module docstring.

    Built in the request's thread (index queries, local files opened), then
    ``start`` opens the data services' responses, then the body is either
    ``blocks()`` (async, on the event loop ``start`` used) or plain iteration
    (a private loop, for callers without one); ``close`` is safe at any time.
    """

    def __init__(self, kind, bindings, services, channels, start, end, authorization=None, sources=None):
        self.kind = kind
        self._sources = sources = sources or {}
        remote_indexes = frozenset(i for i, b in enumerate(bindings) if b.source in services or b.source in sources)
        self.composition = composition = Composition(bindings, kind, channels, start, end, remote_indexes)
        local = [i for i in range(len(bindings)) if i not in remote_indexes]
        found = {}

        def local_plan():  # re-run by open_stream if compaction moves the chunks meanwhile
            found["placed"], found["windowed"] = composition.local_entries(local)
            refs = [ref for items in found["placed"].values() for _, ref, _ in items]
            refs += [ref for entries in found["windowed"].values() for _, ref, _ in entries]
            return [(ref, None) for ref in refs]

        self._local = reader.open_stream(kind, {bindings[i].identity for i in local}, local_plan)
        self._windowed = found["windowed"]  # session channel key -> [(binding index, ChunkRef, session ids)]
        self._spool = self._loop = self._client = None
        self._private = self._closed = False
        self.parts = []  # (binding index, RemoteRead or [(ChunkRef, transform)]) in session time order
        try:
            for i in sorted(
                range(len(bindings)), key=lambda i: (bindings[i].start is not None, bindings[i].start or 0, i)
            ):
                if i in remote_indexes:
                    read = self._remote_read(i, services.get(bindings[i].source), authorization)
                    if read is not None:
                        self.parts.append((i, read))
                elif items := found["placed"].get(i):
                    items.sort(key=lambda p: p[0])
                    self.parts.append((i, [(ref, transform) for _, ref, transform in items]))
        except BaseException:
            self._local.close()
            raise

    def _remote_read(self, i, base, authorization):
        composition, binding = self.composition, self.composition.bindings[i]
        bounds = composition.data_bounds(i)
        if bounds is None or not composition.serves_channels(i):
            return None
        source = self._sources.get(binding.source)
        if source is not None:  # built in: read in-process, same routing as a data service's chunks
            channels = None
            if self.kind != "events":
                channels = ChannelSet([(low, high) for low, high, _ in composition.segments(i)])
            return SourceRead(binding.source, source.prepare(binding.identity), self.kind, channels, *bounds)
        if self.kind == "events":
            url = remote.data_url(base, binding.identity, "events")
        else:
            ranges = ChannelSet([(low, high) for low, high, _ in composition.segments(i)]).ranges
            url = remote.data_url(base, binding.identity, self.kind, remote.channel_expression(ranges))
        params = {name: str(value) for name, value in zip(("start", "end"), bounds) if value is not None}
        return remote.RemoteRead(binding.source, url, params, authorization)

    def _reads(self):
        return [part for _, part in self.parts if isinstance(part, _READS)]

    # --- opening and closing ------------------------------------------------------------------------

    def start(self, asgi):
        """Open every data service read, from the request's thread: on the server's event loop under ASGI
        (``async_to_sync`` runs it there), else on a private loop. Raises ``UpstreamFailed``/``UpstreamTimeout``."""
        if asgi:
            async_to_sync(self.open)()
            return
        self._private, self._loop = True, asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self.open())
        except BaseException:
            self._loop.close()
            raise

    async def open(self):
        self._loop = asyncio.get_running_loop()
        self._client = remote.new_client() if self._private else remote.shared_client()
        reads = self._reads()
        results = await asyncio.gather(*(read.open(self._client) for read in reads), return_exceptions=True)
        failure = next((result for result in results if isinstance(result, BaseException)), None)
        if failure is not None:
            await self.aclose()
            raise failure

    async def aclose(self):
        if self._closed:
            return
        self._closed = True
        try:
            for read in self._reads():
                await read.aclose()
            if self._private and self._client is not None:
                await self._client.aclose()
        finally:
            self._close_files()

    def _close_files(self):
        self._local.close()
        if self._spool is not None:
            self._spool.close()

    def close(self):
        """Release everything (the data service responses too); safe to call again."""
        if self._closed:
            if self._private and not self._loop.is_closed():
                self._loop.close()
            return
        if self._loop is None:  # never started
            self._closed = True
            self._close_files()
        elif self._private:
            try:
                self._loop.run_until_complete(self.aclose())
            finally:
                self._loop.close()
        else:
            async_to_sync(self.aclose)()

    def wire_length(self):
        return None  # known only once every part has been read

    # --- the body -----------------------------------------------------------------------------------

    def __iter__(self):
        """The body on this stream's private loop (``start(asgi=False)``)."""
        blocks = self.blocks()
        try:
            while True:
                try:
                    block = self._loop.run_until_complete(anext(blocks))
                except StopAsyncIteration:
                    return
                yield block
        finally:
            self._loop.run_until_complete(blocks.aclose())
            self.close()

    async def blocks(self):
        """The body, in blocks of about ``reader.BLOCK_SIZE`` bytes (as the local path); see the module docstring
        for failures."""
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("a gateway stream is read on the event loop that opened it")
        out = ResponseBlocks()
        try:
            for i, part in self.parts:
                if isinstance(part, _READS):
                    pieces = self._remote_part(i, part, out)
                else:
                    pieces = self._stored_part(reader.ChunkStream(self.kind, part, self._files()), out)
                async for block in pieces:
                    yield block
            if self._windowed:
                async for block in self._stored_part(self._window_stream(), out):
                    yield block
            if out.size:
                yield out.take()
        except Exception:
            yield INVALID_FRAME
            raise
        finally:
            await self.aclose()

    def _files(self):
        return _Files(self._local.files, self._spool)

    async def _stored_part(self, stream, out):
        """A ``reader.ChunkStream``'s chunks (blocks read in worker threads), framed into this response."""
        parser = ChunkReader()
        async for block in _in_threads(iter(stream)):
            for chunk in parser.feed(block):
                if out.add(
                    chunk.start_time,
                    chunk.end_time,
                    chunk.channel_ids,
                    chunk.compression,
                    chunk.unpacked_length,
                    chunk.packed,
                ):
                    yield out.take()
        parser.close()

    async def _remote_part(self, i, read, out):
        """Binding ``i``'s chunks from its data service, relayed, transformed or spooled for merged windows."""
        loop = asyncio.get_running_loop()
        if read.response is None or read.consumed or loop.time() - read.opened_at > HELD_SECONDS:
            await read.open(self._client)  # held too long: the data service may have given up on it
        composition, kind = self.composition, self.kind
        segments = composition.segments(i) if kind != "events" else None
        batch, batch_bytes, transforming = [], 0, False
        pending = None  # the batch before, being transformed in a worker thread
        # Chunks that go out as received come as runs (framing included) from a data service's reader.
        relayable = _relayable(composition, i, segments) if isinstance(read, remote.RemoteRead) else None
        try:
            async for chunks in read.chunk_lists(relayable) if relayable else read.chunk_lists():
                for chunk in chunks:
                    if type(chunk) is Run:
                        async for block in self._flushed(out, pending, batch, transforming):
                            yield block  # whatever came before goes out first, in order
                        pending, batch, batch_bytes, transforming = None, [], 0, False
                        if out.add_run(chunk):
                            yield out.take()
                        continue
                    if not chunk.unpacked_length:
                        continue  # an empty list: no empty chunks
                    spooled = None
                    for session_ids in composition.routes(i, segments, chunk):
                        key = tuple(session_ids or ())
                        if composition.windowed(key):
                            spooled = spooled or self._spooled(chunk)
                            self._windowed.setdefault(key, []).append((i, spooled, session_ids))
                            continue
                        placed = composition.placed(i, chunk, session_ids)
                        if placed is not None:
                            transform = placed[2]
                            batch.append((chunk, transform))
                            if transform is not None:
                                transforming, batch_bytes = True, batch_bytes + chunk.unpacked_length
                if not batch or (transforming and batch_bytes < TRANSFORM_BATCH_BYTES):
                    continue
                if pending is not None:
                    for block in out.add_all(await pending):
                        yield block
                    pending = None
                if transforming:
                    pending = loop.run_in_executor(None, _encode, kind, batch)
                else:
                    for block in out.add_all(_encode(kind, batch)):
                        yield block
                batch, batch_bytes, transforming = [], 0, False
            async for block in self._flushed(out, pending, batch, transforming):
                yield block
            pending = None
        finally:
            if pending is not None and not pending.done():
                await asyncio.wait([pending])  # let the thread finish before anything it reads is released
            await read.aclose()

    async def _flushed(self, out, pending, batch, transforming):
        """The blocks of the batch being transformed (``pending``), then of ``batch``, in order."""
        if pending is not None:
            for block in out.add_all(await pending):
                yield block
        if batch:
            loop = asyncio.get_running_loop()
            kind = self.kind
            encoded = await loop.run_in_executor(None, _encode, kind, batch) if transforming else _encode(kind, batch)
            for block in out.add_all(encoded):
                yield block

    def _spooled(self, chunk):
        if self._spool is None:
            self._spool = _Spool()
        return self._spool.add(chunk)

    def _window_stream(self):
        composition = self.composition
        planned = []
        for key, entries in self._windowed.items():
            planned += composition.windows(key, entries)
        planned.sort(key=lambda p: p[0])
        return reader.ChunkStream(self.kind, [(window, merge) for _, window, merge in planned], self._files())


def _relayable(composition, i, segments):
    """For binding ``i``'s data service reader: whether a chunk, by its times and channel ids, goes out exactly
    as received (routed as itself, untransformed, not merged); None when no chunk of the binding can."""
    binding = composition.bindings[i]
    if binding.offset or i in composition.merging:
        return None
    low, high = binding.start, binding.end
    known = {}  # channel ids -> whether they are served as themselves, unmerged

    def relayable(start, end, channel_ids):
        key = tuple(channel_ids)
        found = known.get(key)
        if found is None:
            routes = composition.routes(i, segments, ReceivedChunk(0, 0, list(key), 0, 0, b""))
            found = known[key] = (
                len(routes) == 1
                and tuple(routes[0] if routes[0] is not None else key) == key
                and not composition.windowed(tuple(routes[0] or ()))
            )
        return found and (low is None or start >= low) and (high is None or end <= high)

    return relayable


def _encode(kind, batch):
    """``(start, end, channel_ids, compression, unpacked_length, body)`` of each chunk of ``batch`` as served."""
    out, compression = [], reader.transformed_compression()  # as the local path sends them
    for chunk, transform in batch:
        if transform is None:  # as received
            out.append(
                (
                    chunk.start_time,
                    chunk.end_time,
                    chunk.channel_ids,
                    chunk.compression,
                    chunk.unpacked_length,
                    chunk.packed,
                )
            )
            continue
        result = transforms.apply_packed(kind, chunk.packed, chunk.unpacked_length, chunk.compression, transform, chunk)
        if result is None:
            continue  # clipped away
        body = wire.compress(result.payload) if compression == wire.COMPRESSION_LZ4 else result.payload
        out.append((result.start, result.end, result.channel_ids, compression, len(result.payload), body))
    return out


class _Files:
    """What the response's ``ChunkStream``s read from: the local segment files and the spool.

    Closing is the gateway stream's business (several ``ChunkStream``s share them).
    """

    def __init__(self, local, spool):
        self.local, self.spool = local, spool

    def read(self, ref):
        return self.spool.read(ref) if ref.file == _Spool.NAME else self.local.read(ref)

    def close(self):
        pass


class _Spool:
    """Remote chunks held for merged windows: an unlinked temporary file, indexed by ``reader.ChunkRef``s."""

    NAME = "\0spool"  # no segment file is called this

    def __init__(self):
        self.file = tempfile.TemporaryFile(prefix="rta-gateway-")
        self.size = 0

    def add(self, chunk):
        packed = chunk.packed
        self.file.write(packed)
        ref = reader.ChunkRef(
            list(chunk.channel_ids),
            chunk.start_time,
            chunk.end_time,
            self.NAME,
            self.size,
            len(packed),
            chunk.unpacked_length,
            chunk.compression,
            chunk.channel,
        )
        self.size += len(packed)
        return ref

    def read(self, ref):
        self.file.flush()
        return os.pread(self.file.fileno(), ref.packed_length, ref.offset)

    def close(self):
        self.file.close()


async def _in_threads(iterator):
    """The items of a blocking iterator, each ``next`` in a worker thread while the item before is used."""
    loop = asyncio.get_running_loop()
    ahead = loop.run_in_executor(None, next, iterator, None)
    try:
        # Shielded: a cancel (the client went away) must not leave a read running beside the close after.
        while (item := await asyncio.shield(ahead)) is not None:
            ahead = loop.run_in_executor(None, next, iterator, None)
            yield item
    finally:
        if not ahead.done():
            await asyncio.wait([ahead])
        if not ahead.cancelled():
            ahead.exception()  # retrieved: an error of a read nobody waits for is not worth a warning
