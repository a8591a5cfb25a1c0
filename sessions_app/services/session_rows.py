"""Session rows and markers as SQL built once per database vendor, for the session service's hot path.

``updates`` applies the rules; this module only reads and writes: statements are
built from the models' metadata (with the fields' own conversions of values in
and out), so the ORM's compiling on every call is skipped, and on PostgreSQL
they run through a server-binding cursor that psycopg may prepare. Also here:
the rows this process wrote last (``RECENT``), which spare the next live update
of a session its read.
"""

import collections
import functools
import threading
import time

from django.db import connection

from sessions_app.models import Marker, Session


class RecentRows:
    """The session rows this process wrote last, with their version (``xmin``), by identity.

    The next update of a session skips reading it. Only a hint: the guarded write checks
    the version, so an entry another writer made stale costs one read. An entry is taken
    out while a call uses it, so its values belong to one call at a time.
    """

    def __init__(self, size, max_age):
        self.size, self.max_age = size, max_age
        self._rows = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, identity):
        with self._lock:
            entry = self._rows.pop(identity, None)
        if entry is None or time.monotonic() - entry[2] > self.max_age:
            return None
        return entry[0], entry[1]

    def put(self, identity, values, version):
        with self._lock:
            self._rows[identity] = (values, version, time.monotonic())
            if len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def clear(self):
        with self._lock:
            self._rows.clear()


# Live sessions a process updates; a minute bounds how long an entry can wait for its version check.
RECENT = RecentRows(size=4096, max_age=60.0)


# --- SQL of the hot path -----------------------------------------------------------------------
# Built once per vendor (PostgreSQL, or SQLite for the embedded database) from the models' metadata,
# with the fields' own conversions for values in and out, so the ORM's per-call compiling is skipped.

# The columns loaded: all but the creation and modification times, which no op reads.
_SESSION_FIELDS = [f for f in Session._meta.concrete_fields if f.attname not in ("created", "updated")]
SESSION_ATTNAMES = [f.attname for f in _SESSION_FIELDS]
_SESSION_BY_ATTNAME = {f.attname: f for f in Session._meta.concrete_fields}
MARKER_FIELDS = ["category", "type", "label", "description", "start_time", "end_time", "details"]
MARKER_INSERT_FIELDS = [Marker._meta.get_field(name) for name in ["session", "marker_id", *MARKER_FIELDS]]
# Types for the guarded upsert's VALUES list, whose parameters have no column to take a type from.
_SQL_TYPES = {"CharField": "text", "TextField": "text", "BigIntegerField": "bigint", "JSONField": "jsonb"}


# Statement builders are cached per vendor and read the connection only while building.


@functools.cache
def _session_select(vendor, lock):
    """SELECT of a session row: locked (FOR UPDATE where the database has it), or with its version (xmin)."""
    q = connection.ops.quote_name
    columns = ", ".join(q(f.column) for f in _SESSION_FIELDS)
    if not lock:
        columns = "xmin, " + columns
    suffix = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    return f"SELECT {columns} FROM {q(Session._meta.db_table)} WHERE {q(Session._meta.pk.column)} = %s{suffix}"


@functools.cache
def _session_converters(vendor):
    """Per column, the backend's and the field's conversions of database values (as the ORM applies them)."""
    table = Session._meta.db_table
    return [
        tuple(connection.ops.get_db_converters(f.get_col(table)) + f.get_db_converters(connection))
        for f in _SESSION_FIELDS
    ]


@functools.cache
def _session_update(vendor, attnames):
    q = connection.ops.quote_name
    sets = ", ".join(f"{q(_SESSION_BY_ATTNAME[a].column)} = %s" for a in attnames)
    return f"UPDATE {q(Session._meta.db_table)} SET {sets} WHERE {q(Session._meta.pk.column)} = %s"


@functools.cache
def marker_upsert(vendor, count, guard):
    """INSERT .. ON CONFLICT DO UPDATE of ``count`` markers; with a ``guard``, only rows for which it holds."""
    q = connection.ops.quote_name
    column = {f.name: q(f.column) for f in MARKER_INSERT_FIELDS}
    if guard is None:
        row = "(" + ", ".join(["%s"] * len(MARKER_INSERT_FIELDS)) + ")"
        source = f"VALUES {', '.join([row] * count)}"
    else:
        typed = [
            f"%s::{_SQL_TYPES[f.target_field.get_internal_type() if f.is_relation else f.get_internal_type()]}"
            for f in MARKER_INSERT_FIELDS
        ]
        rows = ", ".join(["(" + ", ".join(typed) + ")"] * count)
        source = f"SELECT * FROM (VALUES {rows}) AS markers WHERE {guard}"
    updates = ", ".join(f"{column[name]} = EXCLUDED.{column[name]}" for name in MARKER_FIELDS)
    return (
        f"INSERT INTO {q(Marker._meta.db_table)} ({', '.join(column.values())}) {source} "
        f"ON CONFLICT ({column['session']}, {column['marker_id']}) DO UPDATE SET {updates}"
    )


def cursor_for(db):
    """A cursor for the statements above: on PostgreSQL one binding parameters on the server.

    Server-side binding spares quoting every value in Python, and lets psycopg prepare the
    statements when the connection is configured to (the ``prepare_threshold`` option).
    """
    if db.vendor != "postgresql":
        return db.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    db.ensure_connection()
    return (db.make_debug_cursor if db.queries_logged else db.make_cursor)(ServerBindingCursor(db.connection))


def read_session(db, cursor, identity, lock):
    """The session with its row locked for the transaction, or (unlocked) ``(session, xmin)``; None if absent."""
    cursor.execute(_session_select(db.vendor, lock), [identity])
    row = cursor.fetchone()
    if row is None:
        return None
    version, row = (None, row) if lock else (row[0], row[1:])
    values = []
    for value, converters in zip(row, _session_converters(db.vendor)):
        for convert in converters:
            value = convert(value, None, db)
        values.append(value)
    session = Session.from_db(db.alias, SESSION_ATTNAMES, values)
    return session if lock else (session, version)


def row_update(db, session, attnames):
    """The UPDATE writing ``attnames`` of the session row, as (sql, params)."""
    params = [_SESSION_BY_ATTNAME[a].get_db_prep_save(getattr(session, a), db) for a in attnames]
    params.append(session.pk)
    return _session_update(db.vendor, tuple(attnames)), params
