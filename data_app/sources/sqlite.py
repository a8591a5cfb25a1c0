"""SQLite files as a data source, in the layout of the toolkit's data-adapter example (issue: serve in place).

One file per session: a ``properties`` table (``key``, ``value``: ``$timestamp``,
``$identifier`` and details) and sample tables (``samples_100``,
``samples_50``) keyed by ``unix_time`` in ms. The data identity is the file's
path under ``RTA_SQLITE_ROOT``, absolute or relative to the root.

- **scope**: the path is resolved (symlinks and all) and must be a file under
  the root; ``..`` is refused outright. Anything else is ``NotFound`` before a
  file is opened. Files are opened read-only (``mode=ro`` URI).
- **names**: tables and columns come only from the mapping, checked against
  the file's own schema (``sqlite_master``, ``table_info``), and are always
  quoted as identifiers; values are bound parameters.
- **where a field is**: the field mapping's ``table`` property, else the
  mapping's, else the first sample table with that column; ``time_column`` /
  ``time_unit`` (``ns|us|ms|s``) likewise field, mapping, then ``unix_time`` /
  ``ms``. Without a stored mapping every numeric column of every table with the
  time column is served (channels 0, 1 ... in schema order).
- **reads**: a range scan on the time column (its index: ``unix_time`` is the
  rowid in the example) into Arrow columns (ADBC's SQLite driver), converted
  to numpy without Python per-row work; a file whose column types the driver
  cannot infer (NULLs first, mixed types) is read with the standard module.
- **events**: the rows of the mapping's ``events_table`` (``event_tables``).
"""

import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

from data_app.sources import event_tables
from data_app.sources.series import SeriesSource, StoreField
from rta_core.errors import NotFound
from rta_kit.grid import INT64_MAX, INT64_MIN

SETTINGS = ("RTA_SQLITE_ROOT", "RTA_SQLITE_SOURCE")
UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
DEFAULT_TIME_COLUMN, DEFAULT_TIME_UNIT = "unix_time", "ms"
PROPERTIES_TABLE = "properties"
NUMERIC_AFFINITY = ("INT", "REAL", "FLOA", "DOUB", "NUM", "DEC", "BOOL")  # declared types read as samples
IDLE_CONNECTIONS = 8  # open read-only connections kept for reuse (each file's, per driver)


def from_settings(settings):
    root = getattr(settings, "RTA_SQLITE_ROOT", "")
    return [SqliteSource(settings.RTA_SQLITE_SOURCE, root)] if root else []


@dataclass(frozen=True)
class Group:
    """What is read together: one table by one time column."""

    table: str
    time_column: str
    time_unit: str


def quoted(name):
    """``name`` as an SQLite identifier (double quotes, inner quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def _numeric(declared):
    declared = (declared or "").upper()
    return not declared or any(part in declared for part in NUMERIC_AFFINITY)


class SqliteSource(SeriesSource):
    def __init__(self, name, root):
        self.name = name
        self.root = os.path.abspath(root)
        self._idle = OrderedDict()  # (path, driver) -> [connection]
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._idle)  # at exit too: drivers complain of connections left open

    # --- scope ------------------------------------------------------------------------------------

    def resolve(self, identity):
        """The real path of ``identity``: a regular file under the root, else NotFound (nothing opened)."""
        if not isinstance(identity, str) or not identity or "\x00" in identity:
            raise NotFound("no such data file under the SQLite root")
        if ".." in identity.replace("\\", "/").split("/"):
            raise NotFound("no such data file under the SQLite root")
        root = os.path.realpath(self.root)
        path = os.path.realpath(identity if os.path.isabs(identity) else os.path.join(self.root, identity))
        if os.path.commonpath([root, path]) != root or path == root or not os.path.isfile(path):
            raise NotFound("no such data file under the SQLite root")
        return path

    def relative(self, path):
        """The identity the indexer publishes for a file (a path under the real root): relative to the root."""
        return os.path.relpath(path, os.path.realpath(self.root)).replace(os.sep, "/")

    # --- connections ------------------------------------------------------------------------------

    def _connect(self, path, driver):
        uri = f"file:{quote(path)}?mode=ro"
        if driver == "adbc":
            import adbc_driver_sqlite.dbapi

            return adbc_driver_sqlite.dbapi.connect(uri)
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    def _take(self, path, driver):
        with self._lock:
            idle = self._idle.get(_key(path, driver))
            if idle:
                return idle.pop()
        return self._connect(path, driver)

    def _give(self, path, driver, connection):
        key = _key(path, driver)
        with self._lock:
            self._idle.setdefault(key, []).append(connection)
            self._idle.move_to_end(key)
            extra = []
            while sum(len(v) for v in self._idle.values()) > IDLE_CONNECTIONS:
                _, oldest = self._idle.popitem(last=False)
                extra += oldest
        for old in extra:
            old.close()

    def _query(self, path, sql, params=()):
        """Rows of a small query (schema, extents, properties) with the standard module."""
        connection = self._take(path, "sqlite3")
        try:
            rows = connection.execute(sql, params).fetchall()
        except BaseException:
            connection.close()
            raise
        self._give(path, "sqlite3", connection)
        return rows

    # --- schema -----------------------------------------------------------------------------------

    def schema(self, path):
        """``{table: [(column, declared type)]}`` of the file's own tables, in schema order."""
        tables = self._query(path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return {t: [(c[1], c[2]) for c in self._query(path, f"PRAGMA table_info({quoted(t)})")] for (t,) in tables}

    def properties(self, path):
        """The file's ``properties`` table as a dict ({} without one)."""
        if PROPERTIES_TABLE not in self.schema(path):
            return {}
        rows = self._query(path, f"SELECT key, value FROM {quoted(PROPERTIES_TABLE)}")
        return {str(k): "" if v is None else str(v) for k, v in rows}

    def store_fields(self, identity, mapping):
        path = self.resolve(identity)
        schema = self.schema(path)
        columns = {table: {name for name, _ in cols} for table, cols in schema.items()}
        default_time = mapping.property("time_column", DEFAULT_TIME_COLUMN)
        default_unit = mapping.property("time_unit", DEFAULT_TIME_UNIT)
        if not mapping.stored:  # every numeric column of every table with the time column
            out = []
            for table, cols in schema.items():
                if table == PROPERTIES_TABLE or default_time not in columns[table] or default_unit not in UNITS:
                    continue
                group = Group(table, default_time, default_unit)
                out += [StoreField(c, group) for c, declared in cols if c != default_time and _numeric(declared)]
            seen = set()  # a name maps one column: the first table's wins
            return [f for f in out if not (f.name in seen or seen.add(f.name))]
        out = []
        for f in mapping.fields:
            time_column = f.properties.get("time_column") or default_time
            unit = f.properties.get("time_unit") or default_unit
            table = f.properties.get("table") or mapping.property("table")
            if not table:  # the first table holding the column and the time column
                table = next((t for t in schema if {f.name, time_column} <= columns[t]), None)
            if table in columns and {f.name, time_column} <= columns[table] and unit in UNITS:
                out.append(StoreField(f.name, Group(table, time_column, unit), f.channel))
        return out

    # --- data -------------------------------------------------------------------------------------

    def time_range(self, identity, mapping, group):
        path = self.resolve(identity)
        t, table = quoted(group.time_column), quoted(group.table)
        # Two subqueries: SQLite answers a lone min() or max() from the index, both at once by a scan.
        ((first, last),) = self._query(path, f"SELECT (SELECT min({t}) FROM {table}), (SELECT max({t}) FROM {table})")
        if first is None or last is None:
            return None
        factor = UNITS[group.time_unit]
        return round(first * factor), round(last * factor)

    def read(self, identity, mapping, group, names, low, high):
        path = self.resolve(identity)
        factor = UNITS[group.time_unit]
        t = quoted(group.time_column)
        values = ", ".join(f"CAST({quoted(n)} AS REAL)" for n in names)
        sql = f"SELECT {t}, {values} FROM {quoted(group.table)} WHERE {t} >= ? AND {t} < ? ORDER BY {t}"
        params = (-(-low // factor), min(high // factor + 1, INT64_MAX))  # whole units in [low, high], end excluded
        try:
            times, columns = self._read_arrow(path, sql, params, len(names))
        except OSError:  # the driver infers a column's type from its first rows (all NULL: INT64): read plainly
            times, columns = self._read_rows(path, sql, params, len(names))
        times = _nanoseconds(times, factor)
        return unique_times(times, dict(zip(names, columns, strict=True)))

    def event_rows(self, identity, mapping, start, end):
        """Rows of the mapping's ``events_table`` (``event_tables``) in [start, end], by ``event_time_column`` /
        ``event_time_unit`` (default: the mapping's ``time_column`` / ``time_unit``)."""
        table = mapping.property("events_table")
        if not table:
            return []
        path = self.resolve(identity)
        columns = [name for name, _ in self.schema(path).get(table, [])]
        time_column = mapping.property("event_time_column") or mapping.property("time_column", DEFAULT_TIME_COLUMN)
        unit = mapping.property("event_time_unit") or mapping.property("time_unit", DEFAULT_TIME_UNIT)
        if time_column not in columns or unit not in UNITS:
            return []
        factor, t = UNITS[unit], quoted(time_column)
        low = -(-(INT64_MIN if start is None else start) // factor)
        high = (INT64_MAX if end is None else end) // factor
        sql = f"SELECT * FROM {quoted(table)} WHERE {t} >= ? AND {t} <= ? ORDER BY {t}"
        name_field, status_field = event_tables.name_fields(mapping)
        rows = [dict(zip(columns, values, strict=True)) for values in self._query(path, sql, (low, high))]
        if not rows:
            return []
        whens = _nanoseconds(np.array([row[time_column] for row in rows]), factor)
        found = (
            event_tables.event_row(w, r, name_field, status_field, skip=(time_column,)) for w, r in zip(whens, rows)
        )
        return [event for event in found if event is not None]

    def _read_arrow(self, path, sql, params, count):
        connection = self._take(path, "adbc")
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                table = cursor.fetch_arrow_table()
        except BaseException:
            connection.close()
            raise
        self._give(path, "adbc", connection)
        times = table.column(0).to_numpy()
        columns = [np.asarray(table.column(i + 1).to_numpy(), dtype=np.float64) for i in range(count)]
        return times, columns

    def _read_rows(self, path, sql, params, count):
        rows = self._query(path, sql, params)
        array = np.array(rows, dtype=object).reshape(len(rows), count + 1)
        times = np.array([float(t) if isinstance(t, float) else int(t) for t in array[:, 0]])
        columns = [np.array([np.nan if v is None else v for v in array[:, i + 1]], np.float64) for i in range(count)]
        return times, columns

    def check(self):
        if not os.path.isdir(self.root) or not os.access(self.root, os.R_OK | os.X_OK):
            raise OSError("the SQLite root folder is missing or unreadable")

    def close(self):
        with self._lock:
            _close_all(self._idle)


def _key(path, driver):
    """Idle connections are the file's *as it is now*: one replaced (a new inode) gets new connections."""
    return path, os.stat(path).st_ino, driver


def _close_all(idle):
    while idle:
        _, connections = idle.popitem()
        for connection in connections:
            connection.close()


def _nanoseconds(times, factor):
    """Store times (integers, or reals for fractional units) as int64 ns."""
    times = np.asarray(times)
    if times.dtype.kind == "f":
        return np.rint(times * factor).astype(np.int64)
    return times.astype(np.int64) * factor


def unique_times(times, columns):
    """``(times, columns)`` with one sample per time (the last row of a repeated time wins)."""
    if len(times) > 1:
        gaps = np.diff(times)
        if (gaps < 0).any():
            order = np.argsort(times, kind="stable")
            times, columns = times[order], {k: v[order] for k, v in columns.items()}
            gaps = np.diff(times)
        if not gaps.all():
            keep = np.append(gaps != 0, True)
            times, columns = times[keep], {k: v[keep] for k, v in columns.items()}
    return times, columns
