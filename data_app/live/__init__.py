"""Live streaming of open sessions (spec §9 Redis buffer protocol, §10 WebSocket live protocol).

Writers (every ``DataSink``) publish ``StreamDataBurst``s of live sessions to
the buffer (``publisher``); session changes update the buffer's session
directory and nudge WebSocket consumers (``sessions``). Each server process
follows the buffer once per watched session (``hub``) and serves every client
through a ``ClientStream`` (``client``); ``consumer`` is the thin Channels
adapter, ``http`` answers plain HTTP on the stream path, ``transport`` takes
from daphne what ASGI leaves out. ``buffers`` is the back-end package
(``base`` the interface, ``memory`` the in-process buffer used when
``RTA_REDIS_URL`` is unset, ``redis`` the Redis one, ``get_buffer()`` the
factory), ``keys`` the protocol's key names, ``container`` the LZ4 frame
container, ``bursts`` the burst encoding, ``batching`` outgoing bursts and
``trimmer`` keeps streams bounded.
"""

import threading

SUBPROTOCOL = "mat.ocs.rta.stream-lz4"


def process_wide(make):
    """A function returning the one object ``make()`` builds, built on the first call (from any thread)."""
    lock, made = threading.Lock(), []

    def get():
        if not made:
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    return get
