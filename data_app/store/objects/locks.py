"""PostgreSQL advisory locks: how writers and compaction of one data identity coordinate on object storage.

A writer of an identity holds its transaction-level lock from before it uploads
a flush's object until its index rows commit; compaction takes the same lock
before it repoints rows or deletes an object of that identity. So an object
no committed row names, found under the lock, is not about to be named by a
writer in flight. One compaction runs at a time (a session-level lock).

Other databases (SQLite) have no advisory locks: there a writer's transaction
already serialises every writer and compaction (one database lock), so these
are no-ops.
"""

import hashlib
from contextlib import contextmanager

from django.db import connection

_COMPACTION = (0x5254, 0x4331)  # two-int keys: their own space, apart from the identities' bigint keys


def digest(identity):
    """The hex digest naming an identity's objects (as ``segments.segment_name`` names its segment)."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40]


def _key(digest_hex):
    return int(digest_hex[:16], 16) - (1 << 63)  # a signed 64-bit lock key


def lock_digest(digest_hex):
    """Take the identity's lock until the current transaction ends (call inside ``transaction.atomic``)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_key(digest_hex)])


def lock_identity(identity):
    lock_digest(digest(identity))


@contextmanager
def compaction_lock(busy):
    """Hold the one-compaction-at-a-time lock; raise ``busy()`` when another process holds it."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", _COMPACTION)
        if not cursor.fetchone()[0]:
            raise busy()
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _COMPACTION)
