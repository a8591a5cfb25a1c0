"""Which sessions are live, their live JSON, and keeping the buffer directory in step with them.

A session is *live* (streamed, and published by writers) while its state is
waiting (1) or open (2): it has not reached a closed state (>= 4, spec §3)
and is not unknown. ``session_changed`` runs after every committed
``create_or_update_session`` (and when a writer first finds its session live):
it stores the session JSON and time range in the directory entry (creating it
for a live session) and tells the WebSocket clients watching it.
"""

import asyncio
import hashlib
import json
import logging
import threading
import time

from django.conf import settings

from data_app.live import logs, process_wide
from data_app.live.buffers import get_buffer
from rta_core.identities import is_identity
from sessions_app.models import SessionState

log = logging.getLogger(__name__)

_lock = threading.Lock()
_known = {}  # identity -> (live, checked at monotonic)
_KNOWN_LIMIT = 10_000


def json_is_live(text):
    """Whether a session JSON (as text) is in a live state."""
    try:
        return SessionState.is_live(json.loads(text).get("state"))
    except (TypeError, ValueError, AttributeError):
        return False


def remember(identity, live):
    with _lock:
        if len(_known) >= _KNOWN_LIMIT:
            _known.clear()
        _known[identity] = (live, time.monotonic())


def is_live(identity):
    """Whether writers should publish ``identity`` (cached; re-read every RTA_STREAM_LIVE_CHECK_INTERVAL s)."""
    from sessions_app.models import Session

    with _lock:
        known = _known.get(identity)
    if known is not None and time.monotonic() - known[1] < settings.RTA_STREAM_LIVE_CHECK_INTERVAL:
        return known[0]
    state = Session.objects.filter(identity=identity).values_list("state", flat=True).first()
    live = state is not None and SessionState.is_live(state)
    remember(identity, live)
    return live


def render(session):
    """The session JSON the live stream sends (the REST ``GET /sessions/{identity}`` document), as text."""
    from sessions_app.services.rendering import sessions_json

    return json.dumps(sessions_json([session])[0], separators=(",", ":"), ensure_ascii=False)


def load(identity):
    """``(json text, live)`` of a stored session, or ``None`` (runs in a thread: database)."""
    from sessions_app.models import Session

    if not is_identity(identity):
        return None  # no session has an invalid identity
    session = Session.objects.filter(identity=identity).first()
    if session is None:
        return None
    return render(session), SessionState.is_live(session.state)


def exists(identity):
    """Whether the session is stored (runs in a thread: database)."""
    from sessions_app.models import Session

    return is_identity(identity) and Session.objects.filter(identity=identity).exists()


def on_session_changed(sender, session, **kwargs):
    """Receiver of ``sessions_app.signals.session_changed`` (sent on commit)."""
    session_changed(session)


def on_sessions_deleted(sender, identities, **kwargs):
    """Receiver of ``sessions_app.signals.sessions_deleted`` (sent on commit)."""
    sessions_deleted(identities)


def sessions_deleted(identities):
    """Deleted sessions end their live streams: directory entries go and their watchers look now.

    A watcher that finds the entry gone checks the database, and closes its
    clients normally once the session is gone too (as for a session that
    cannot be streamed, spec §10).
    """
    buffer = get_buffer()
    for identity in identities:
        with _lock:
            _known.pop(identity, None)
        try:
            if buffer.has_session(identity):
                buffer.delete_session(identity)
                nudge(identity)
        except Exception:  # the buffer being down must not fail the deletion; entries expire anyway
            logs.every(
                log,
                "session_deleted",
                10,
                logging.ERROR,
                "could not end the live stream of deleted session %r",
                identity,
                exc_info=True,
            )


def session_changed(session):
    """After a committed change of ``session``: bring its directory entry up to date.

    A session new to this process, or whose liveness changed (opened, closed),
    is published at once, so a stream that starts next finds its entry. Other
    changes cost the caller a set insertion: the publisher thread renders and
    publishes them in batches ``RTA_STREAM_SESSION_PUBLISH_INTERVAL`` apart.
    """
    live = SessionState.is_live(session.state)
    with _lock:
        known = _known.get(session.identity)
    remember(session.identity, live)
    if known is not None and known[0] == live:
        publisher().queue(session.identity)
        return
    try:
        publish_now([session.identity], close_connection=False)
    except Exception:  # the change is committed whatever happens to the live side
        _publish_failed(session.identity)


def _publish_failed(identity):
    """Log (at most every 10 s) that a session's update did not reach the live buffer, with the traceback."""
    logs.every(
        log,
        "session_changed",
        10,
        logging.ERROR,
        "could not publish the update of session %r to the live buffer",
        identity,
        exc_info=True,
    )


def refresh(identity):
    """A writer that just found its session live: its directory entry, now, before its first data."""
    publish_now([identity], close_connection=False)


def publish_now(identities, close_connection=True):
    """Render the sessions as stored now and update their directory entries; nudge their watchers."""
    from django.db import connection

    from sessions_app.models import Session

    try:
        buffer = get_buffer()
        written = []  # live sessions whose entry this wrote (perhaps created)
        for session in Session.objects.filter(identity__in=list(identities)).prefetch_related(
            "markers", "config_bindings"
        ):
            try:
                live = SessionState.is_live(session.state)
                remember(session.identity, live)
                if not live and not buffer.has_session(session.identity):
                    continue
                if buffer.update_session(session.identity, render(session), session.start_time, session.end_time, live):
                    nudge(session.identity)
                    if live:
                        written.append(session.identity)
            except Exception:  # the buffer being down must not stop the others
                _publish_failed(session.identity)
        if written:
            # A session deleted after it was read above has had its entry removed, and this may have
            # written it again: remove it now (else its watchers would wait for the entry to expire).
            kept = set(Session.objects.filter(identity__in=written).values_list("identity", flat=True))
            sessions_deleted([identity for identity in written if identity not in kept])
    finally:
        if close_connection:
            connection.close()  # back to the pool: the publisher thread idles between batches


class SessionPublisher:
    """Publishes changed sessions from one daemon thread, coalescing bursts of changes.

    A live session updated hundreds of times a second (heartbeats, time range,
    markers) is rendered and published a few times a second instead of once per
    update, and the update itself never waits on Redis or on rendering. The
    first change after a quiet spell is published at once; later ones are
    batched to at most one batch per interval. Each batch re-reads the sessions,
    so what is published is always the latest committed state.
    """

    def __init__(self, interval):
        self.interval = interval
        self._pending = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="rta-live-sessions", daemon=True)
        self._thread.start()

    def queue(self, identity):
        with self._lock:
            self._pending.add(identity)
            self._idle.clear()
        self._wake.set()

    def wait(self, timeout=10.0):
        """Until everything queued so far is published (for callers that need it, and tests)."""
        return self._idle.wait(timeout)

    def _run(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, set()
            started = time.monotonic()
            if batch:
                try:
                    publish_now(batch)
                except Exception:
                    logs.every(log, "publisher", 10, logging.ERROR, "live session publisher failed", exc_info=True)
            with self._lock:
                if not self._pending:
                    self._idle.set()
            if batch:
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))


publisher = process_wide(lambda: SessionPublisher(settings.RTA_STREAM_SESSION_PUBLISH_INTERVAL))


# --- nudging WebSocket consumers through the channel layer -------------------------------------------

_loop = None  # the event loop of this process's WebSocket consumers, once one has connected
_own_loop = None  # otherwise (Redis layer only): a loop of our own in a daemon thread
_own_loop_lock = threading.Lock()


def set_consumer_loop(loop):
    """Called by the WebSocket side: the event loop its consumers run on in this process."""
    global _loop
    _loop = loop


def _background_loop():
    global _own_loop
    with _own_loop_lock:
        if _own_loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="rta-live-nudges", daemon=True).start()
            _own_loop = loop
    return _own_loop


def group_name(identity):
    """The channel layer group of a session's WebSocket consumers (group names are short ASCII)."""
    return "rta.live." + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40]


NUDGE = {"type": "live.session"}


def nudge(identity):
    """Tell every consumer of ``identity`` (any process) that its directory entry changed; does not wait.

    The layer's connections belong to one event loop: the consumers' loop when this process has
    one, else (Redis layer) a loop kept for the purpose. The in-memory layer only reaches consumers
    of this process, which exist only if their loop does.
    """
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    loop = _loop
    if loop is None or not loop.is_running():
        if not settings.RTA_REDIS_URL:
            return
        loop = _background_loop()
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group_name(identity), dict(NUDGE)), loop)
    future.add_done_callback(_log_failure)


def _log_failure(future):
    if not future.cancelled() and future.exception() is not None:
        logs.every(log, "nudge", 10, logging.WARNING, "could not nudge live consumers: %s", future.exception())
