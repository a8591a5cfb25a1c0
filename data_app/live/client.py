"""One WebSocket client of a live session (spec §10): what it is sent, and when.

The first message is the session JSON alone. Then come time-range and JSON
updates (from the session's ``Follower``) and, once the client subscribes,
data and events. Each subscription widens the previous one and starts a
back-fill of what it adds, read from the buffer from the session's start
position up to the entry the follower had reached; entries arriving
meanwhile wait in ``pending`` and follow the back-fill, so nothing is lost or
sent twice. A client subscribed to everything is then fed the follower's
shared bursts.

Everything for the client goes through its outbox, sent by one task that
waits while the socket is not draining. When more than
RTA_STREAM_CLIENT_MAX_BUFFER_BYTES wait (outbox plus pending entries) the
client is too slow and is dropped (close code 1008) instead of growing the
server's memory.
"""

import asyncio
import logging
from collections import deque

from django.conf import settings

from data_app.live import bursts, container, transport
from data_app.live.batching import Batcher
from data_app.live.hub import LiveEntry, get_hub
from rta_core.access import Access

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008  # too slow
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
BACKFILL_PAGE = 64  # entries read per back-fill step


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code, reason=""):
        self.code, self.reason = code, reason


class ClientStream:
    def __init__(self, identity, send, flow, access=Access.ANONYMOUS_FULL):
        self.identity = identity
        self.access = access  # a folder-restricted client's session JSON names only sessions in its folders
        self.send = send  # ASGI send
        self.flow = flow  # transport.flow_control(...)
        self.subscription = bursts.Subscription()
        self.follower = None
        self.max_buffer = settings.RTA_STREAM_CLIENT_MAX_BUFFER_BYTES
        self.batcher = Batcher(self.deliver, settings.RTA_STREAM_BURST_BYTES, get_hub().batch_delay)
        self._outbox = deque()
        self._outbox_bytes = 0
        self._has_mail = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._backfilling = False
        self._pending = []
        self._pending_bytes = 0
        self._requests = asyncio.Queue()
        self._closing_json = None
        self.closing = False  # a close is queued: nothing more is accepted
        self._tasks = []

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self, first_json):
        """Queue the first message (the session JSON alone), then follow the session."""
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._request_loop())]
        self.deliver(container.compress(bursts.json_record(first_json)))
        self.follower = await get_hub().attach(self.identity, self)

    async def stop(self):
        """The connection is gone: let go of everything."""
        self.closing = True
        for task in self._tasks:
            task.cancel()
        self.batcher.clear()
        self._outbox.clear()
        self._pending.clear()
        self.flow.release()
        if self.follower is not None:
            self.follower.detach(self)
            self.follower = None

    def close(self, code, reason=""):
        """Close the socket after what is queued (normal close) or at once (errors)."""
        if self.closing:
            return
        if code == CLOSE_NORMAL:
            self.batcher.flush()
        self.closing = True
        if code != CLOSE_NORMAL:
            self._outbox.clear()
            self._outbox_bytes = 0
            self._pending.clear()
            self._pending_bytes = 0
            self.batcher.clear()
        self._outbox.append(_Close(code, reason))
        self._has_mail.set()
        self._drained.set()  # a back-fill waiting for the socket gives up

    # --- what the follower hands over -----------------------------------------------------------

    def on_meta(self, rec):
        if not self.closing:
            self.batcher.add(rec)

    def on_entry(self, entry):
        if self.closing:
            return
        if self._backfilling:
            self._pending.append(entry)
            self._pending_bytes += entry.size
            self._check_budget()
        elif not self.subscription.empty:
            self._forward(entry, self.subscription, None)

    def session_gone(self):
        """The session was deleted: a normal close after what is queued, as for one that cannot be streamed."""
        self.close(CLOSE_NORMAL, "session deleted")

    def session_closed(self, json_text):
        """The session closed: its last JSON after everything already due, then a normal close."""
        if self.closing:
            return
        if self._backfilling:
            self._closing_json = json_text  # sent when the back-fill is over
            return
        self.batcher.flush()
        self.deliver(container.compress(bursts.json_record(json_text)))
        self.close(CLOSE_NORMAL)

    def deliver(self, data):
        """Queue one compressed burst for the socket."""
        if self.closing:
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._has_mail.set()
        if self._outbox_bytes > self.max_buffer // 2:
            self._drained.clear()
        self._check_budget()

    def _check_budget(self):
        if self._outbox_bytes + self._pending_bytes > self.max_buffer:
            log.warning(
                "live: dropping a slow client of %r (%d bytes waiting)",
                self.identity,
                self._outbox_bytes + self._pending_bytes,
            )
            self.close(CLOSE_POLICY, "client too slow")

    def _forward(self, entry, subscription, already):
        """Batch the records of ``entry`` that ``subscription`` wants and ``already`` (if any) did not."""
        if subscription.full and (already is None or already.empty):
            if entry.data_payload:
                self.batcher.add(entry.data_payload)
            return
        for rec in entry.records:
            if subscription.matches(rec) and (already is None or not already.matches(rec)):
                self.batcher.add(rec.raw)

    # --- subscriptions and back-fill -------------------------------------------------------------

    def subscribe(self, request):
        """A ``StreamSubscription`` from the client (handled in order, one back-fill at a time)."""
        if not self.closing:
            self._requests.put_nowait(request)

    async def _request_loop(self):
        while True:
            request = await self._requests.get()
            try:
                await self._widen(request)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live: back-fill for a client of %r failed", self.identity)
                self.close(CLOSE_INTERNAL, "back-fill failed")
                return

    async def _widen(self, request):
        old = self.subscription
        new = old.widen(request)
        if new == old or self.closing:
            return
        follower = self.follower
        directory, upto = follower.directory, follower.position
        self._backfilling = True
        try:
            if directory is not None and upto is not None:
                after = directory.stream_position
                while not self.closing:
                    entries = await follower.buffer.aread_range(directory.stream_name, after, upto, BACKFILL_PAGE)
                    if not entries:
                        break
                    for entry in entries:
                        after = entry.id
                        if entry.session_id != directory.stream_session_id:
                            continue
                        live = LiveEntry.decode(entry)
                        if live is not None:
                            self._forward(live, new, old)
                    # Pace the back-fill by the socket.
                    while self._outbox_bytes > self.max_buffer // 2 and not self.closing:
                        await self._drained.wait()
        finally:
            self._backfilling = False
        if self.closing:
            return
        # Entries that arrived meanwhile follow the back-fill; from here on the follower's feed goes straight out.
        self.subscription = new
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for entry in pending:
            self._forward(entry, new, None)
        if self._closing_json is not None:
            self.session_closed(self._closing_json)
        elif new.full and not self.access.folder_restricted:  # shared bursts carry the JSON everyone else gets
            self.batcher.flush()
            self.follower.join_full(self)

    # --- the socket --------------------------------------------------------------------------------

    async def _send_loop(self):
        try:
            while True:
                await self._has_mail.wait()
                while self._outbox:
                    item = self._outbox.popleft()
                    if isinstance(item, _Close):
                        await transport.close(self.send, item.code, item.reason)
                        return
                    self._outbox_bytes -= len(item)
                    if self._outbox_bytes <= self.max_buffer // 4:
                        self._drained.set()
                    await self.flow.wait_writable()
                    await self.send({"type": "websocket.send", "bytes": item})
                self._has_mail.clear()
        except asyncio.CancelledError:
            raise
        except Exception:  # the connection is gone under us: the disconnect event cleans up
            log.exception("live: sending to a client of %r failed", self.identity)
