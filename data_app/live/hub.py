"""Following the buffer for the sessions this process's WebSocket clients watch.

One ``Follower`` per watched session and process, however many clients
watch it: it reads the session's stream from the leading edge (blocking
XREAD), decodes each entry once and hands it to its clients, and polls the
session's directory entry every RTA_STREAM_TIME_RANGE_INTERVAL seconds (or
at once when nudged through the channel layer) for JSON and time-range
changes. Clients subscribed to everything share one ``Batcher``, so a burst
is compressed once for all of them.
"""

import asyncio
import logging
import time
import weakref

from channels.db import database_sync_to_async
from django.conf import settings

from data_app.live import bursts, container, logs, sessions
from data_app.live.batching import Batcher
from data_app.live.buffers import get_buffer, later_id, parse_id
from data_app.metrics import LIVE_LAG
from sessions_app.services import scope

log = logging.getLogger(__name__)

# How long one blocking read of the stream waits (a new directory entry is picked up after it).
FOLLOW_BLOCK_MS = 1000
# Without a directory entry, how often a follower asks the database whether its session still exists.
STORED_CHECK_SECONDS = 2.0


class LiveEntry:
    """A stream entry of the followed session, decoded once for every client."""

    __slots__ = ("id", "payload", "spans", "data_payload", "_records", "size")

    def __init__(self, entry_id, payload, spans, size):
        self.id, self.payload, self.spans, self.size = entry_id, payload, spans, size
        self._records = None
        if all(len(s) == 3 and (s[0] in bursts.DATA_FIELDS or s[0] == bursts.EVENT) for s in spans):
            self.data_payload = payload
        else:  # session JSON or time range inside an entry (or canonicalised records): keep the data only
            self.data_payload = b"".join(
                r.raw for r in self.records if r.field in bursts.DATA_FIELDS or r.field == bursts.EVENT
            )

    @property
    def records(self):
        if self._records is None:
            self._records = bursts.records(self.payload, self.spans)
        return self._records

    @classmethod
    def decode(cls, entry):
        """The decoded entry, or ``None`` (logged) when its data is not a valid burst."""
        try:
            payload = container.decompress(entry.data)
            return cls(entry.id, payload, bursts.scan(payload), len(entry.data))
        except (container.ContainerError, bursts.BurstError) as exc:
            logs.every(log, "bad entry", 10, logging.WARNING, "skipping stream entry %s: %s", entry.id, exc)
            return None


def _scoped_texts(wanted):
    """``{(folders, text): text as an Access of those folders sees it}`` for ``[(access, text)]`` (a thread)."""
    return {(access.folders, text): scope.scoped_session_json(access, text) for access, text in wanted}


def time_range_record(time_range):
    return bursts.time_range_record(*time_range)


class Follower:
    def __init__(self, hub, identity):
        self.hub, self.identity = hub, identity
        self.buffer = get_buffer()
        self.clients = set()
        self.full = set()  # clients fed by the shared batcher
        self.directory = None
        self.position = None  # id of the last entry dispatched
        self.json = None
        self.time_range = None
        self.closed_json = None  # set once the session is seen closed
        self.scoped = {}  # (folders, json text) -> the text as a client restricted to those folders gets it
        self.gone = False  # set once the session is seen deleted
        self._stored_checked = float("-inf")
        self.shared = Batcher(self._deliver_shared, settings.RTA_STREAM_BURST_BYTES, hub.batch_delay)
        self.interval = max(0.1, settings.RTA_STREAM_TIME_RANGE_INTERVAL)
        self._nudged = asyncio.Event()
        self._range_sent = float("-inf")
        self._tasks = []
        self.ready = asyncio.get_running_loop().create_future()

    # --- life cycle -------------------------------------------------------------------------

    async def start(self):
        try:
            await self._refresh(initial=True)
        except Exception:
            log.exception("live: could not read the directory entry of %r", self.identity)
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._watch())]
        self.ready.set_result(None)

    def stop(self):
        for task in self._tasks:
            task.cancel()
        self.shared.clear()

    def attach(self, client):
        if client not in self.clients:
            self.clients.add(client)
            self.hub._clients += 1
        if self.time_range is not None:
            client.on_meta(time_range_record(self.time_range))
        if self.closed_json is not None:
            client.session_closed(self.json_for(client, self.closed_json))
        if self.gone:
            client.session_gone()

    def detach(self, client):
        if client in self.clients:
            self.clients.discard(client)
            self.hub._clients -= 1
        self.full.discard(client)
        if not self.clients:
            self.hub.remove(self)

    def join_full(self, client):
        """``client`` (its own bursts flushed) takes the shared bursts from now on."""
        self.shared.flush()  # what is gathered already went to this client through its own batcher
        self.full.add(client)

    def nudge(self):
        self._nudged.set()

    # --- folder-restricted clients ------------------------------------------------------------

    async def scope_json(self, texts, clients=None):
        """Work out each of ``texts`` (session JSON) as the folder-restricted ``clients`` (default: all) see it."""
        scopes = {c.access for c in (self.clients if clients is None else clients) if c.access.folder_restricted}
        wanted = [(a, t) for a in scopes for t in texts if t is not None and (a.folders, t) not in self.scoped]
        if wanted:
            try:
                found = await database_sync_to_async(_scoped_texts)(wanted)
            except Exception:  # the database down: they get no related sessions at all (json_for)
                log.exception("live: cannot scope the session JSON of %r", self.identity)
                return
            current = (self.json, self.closed_json, *texts)
            self.scoped = {k: v for k, v in {**self.scoped, **found}.items() if k[1] in current}

    def json_for(self, client, text):
        """The session JSON ``text`` as ``client`` gets it (related sessions outside its folders left out)."""
        if not client.access.folder_restricted:
            return text
        found = self.scoped.get((client.access.folders, text))
        return found if found is not None else scope.without_relations(text)

    # --- following the stream ---------------------------------------------------------------

    async def _follow(self):
        while True:
            try:
                if self.directory is None:
                    await asyncio.sleep(self.interval)
                    continue
                entries = await self.buffer.aread_new(
                    self.directory.stream_name, self.position, block_ms=FOLLOW_BLOCK_MS, count=1000
                )
                self._dispatch_all(entries)
            except asyncio.CancelledError:
                raise
            except Exception:
                logs.every(
                    log,
                    "follow",
                    10,
                    logging.ERROR,
                    "live: following the stream of %r failed; retrying",
                    self.identity,
                    exc_info=True,
                )
                await asyncio.sleep(1)

    def _dispatch_all(self, entries):
        directory = self.directory
        position = parse_id(self.position) if self.position else (0, -1)
        for entry in entries:
            entry_position = parse_id(entry.id)
            if entry_position <= position:
                continue  # already dispatched (catch_up and the follow loop may read the same entries)
            self.position, position = entry.id, entry_position
            LIVE_LAG.observe(max(0.0, time.time() - entry_position[0] / 1000))  # entry ids are <ms>-<seq>
            if entry.session_id != directory.stream_session_id:
                continue  # another session sharing the stream
            live = LiveEntry.decode(entry)
            if live is None:
                continue
            if self.full and live.data_payload:
                self.shared.add(live.data_payload)
            for client in list(self.clients):
                if client not in self.full:
                    client.on_entry(live)

    async def catch_up(self):
        """Dispatch whatever the stream holds now (before the session's last JSON goes out)."""
        if self.directory is None:
            return
        while True:
            entries = await self.buffer.aread_new(self.directory.stream_name, self.position, block_ms=0, count=1000)
            if not entries:
                return
            self._dispatch_all(entries)

    # --- the directory entry ------------------------------------------------------------------

    async def _watch(self):
        while True:
            try:
                try:
                    await asyncio.wait_for(self._nudged.wait(), self.interval)
                except TimeoutError:
                    pass
                self._nudged.clear()
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logs.every(
                    log,
                    "watch",
                    10,
                    logging.ERROR,
                    "live: watching the directory entry of %r failed; retrying",
                    self.identity,
                    exc_info=True,
                )
                await asyncio.sleep(1)

    async def _refresh(self, initial=False):
        directory = await self.buffer.aget_session(self.identity)
        if directory is None:
            # Not published yet, expired, or deleted (which removes it): only the database tells.
            await self._check_stored()
            return
        old = self.directory
        if old is None or (old.stream_session_id, old.stream_name) != (
            directory.stream_session_id,
            directory.stream_name,
        ):
            if initial:
                # Start at the leading edge: clients back-fill what came before.
                last = await self.buffer.alast_id(directory.stream_name)
                self.position = later_id(last, directory.stream_position)
            else:
                # A (new) stream session appeared while we watch: all of it is new to the clients.
                self.position = directory.stream_position
        self.directory = directory
        if directory.time_range is not None and directory.time_range != self.time_range:
            # JSON changes go out at once (nudged); time-range updates at most every ``interval``.
            now = time.monotonic()
            if initial or now - self._range_sent >= self.interval * 0.9:
                self.time_range, self._range_sent = directory.time_range, now
                if not initial:
                    self._meta(time_range_record(self.time_range))
        if directory.json is not None and directory.json != self.json:
            self.json = directory.json
            if not sessions.json_is_live(directory.json):
                await self._closed(directory.json)
            elif not initial:
                await self.scope_json([directory.json])
                self._meta(bursts.json_record(directory.json), directory.json)

    async def _check_stored(self):
        now = time.monotonic()
        if self.gone or now - self._stored_checked < STORED_CHECK_SECONDS:
            return
        self._stored_checked = now
        if not await database_sync_to_async(sessions.exists)(self.identity):
            self.gone = True
            self.shared.flush()
            for client in list(self.clients):
                client.session_gone()

    def _meta(self, rec, json_text=None):
        """A record for every client; ``json_text``: it is that session JSON, which restricted clients get
        as their folders see it."""
        if self.full:
            self.shared.add(rec)
        for client in list(self.clients):
            if client in self.full:
                continue
            if json_text is not None and client.access.folder_restricted:
                client.on_meta(bursts.json_record(self.json_for(client, json_text)))
            else:
                client.on_meta(rec)

    async def _closed(self, json_text):
        """The session closed: clients get the rest of the stream, its last JSON, then a normal close."""
        await self.catch_up()
        await self.scope_json([json_text])
        self.closed_json = json_text
        self.shared.flush()
        for client in list(self.clients):
            client.session_closed(self.json_for(client, json_text))

    def _deliver_shared(self, data):
        for client in list(self.full):
            client.deliver(data)


class Hub:
    """The followers of one event loop (one per server process)."""

    def __init__(self):
        self.followers = {}
        self._clients = 0
        self.base_delay = settings.RTA_STREAM_BATCH_DELAY_MS / 1000
        self.max_sends = settings.RTA_STREAM_MAX_SENDS_PER_SECOND

    def batch_delay(self):
        """The batching delay: RTA_STREAM_BATCH_DELAY_MS, stretched so that small bursts to all the
        clients of this process stay within RTA_STREAM_MAX_SENDS_PER_SECOND."""
        return max(self.base_delay, self._clients / self.max_sends) if self.max_sends > 0 else self.base_delay

    async def attach(self, identity, client):
        follower = self.followers.get(identity)
        if follower is None:
            follower = self.followers[identity] = Follower(self, identity)
            await follower.start()
        else:
            await follower.ready
        if client.access.folder_restricted:
            await follower.scope_json([follower.json, follower.closed_json], [client])
        follower.attach(client)
        return follower

    def remove(self, follower):
        if self.followers.get(follower.identity) is follower:
            del self.followers[follower.identity]
        follower.stop()

    def nudge(self, identity):
        follower = self.followers.get(identity)
        if follower is not None:
            follower.nudge()


_hubs = weakref.WeakKeyDictionary()


def get_hub():
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
        sessions.set_consumer_loop(loop)
    return hub
