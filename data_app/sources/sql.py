"""PostgreSQL / TimescaleDB tables as data sources (issue: serve in place).

``RTA_SQL_SOURCES`` names each database (``name=postgres://...``); a session's
data is the rows of a table with one key. The schema mapping says where:
mapping-level ``table`` (``name`` or ``schema.name``), ``key_column``,
``time_column`` and ``time_unit`` (``ns|us|ms|s`` for integer columns,
``timestamp`` for timestamp columns: the default when the column is one); a
field mapping's own properties override them, so one session may gather
fields of tables at different rates (each table is read on its own).

- **identity**: the key value, matched exactly and always bound as a query
  parameter (quotes, ``%`` and all: PostgreSQL compares it as the key column's
  type; a value that is not one is no data).
- **names**: the table, key and time columns come from the mapping and fields
  from the table's catalog entry; every one is quoted with
  ``psycopg.sql.Identifier``. Numeric and boolean columns are fields.
- **reads**: one statement per slice, a range scan of ``(key, time)`` on the
  snapped bounds (an index on ``(key_column, time_column)`` serves it; with
  TimescaleDB the chunks' own indexes), each column aggregated into one binary
  string that numpy reads in place (``sql_columns``): no Python work per row.
  A long slice is read as ``READ_PARTS`` time ranges at once (one backend each).
  NULLs are NaN (no sample). The time range is two ``ORDER BY ... LIMIT 1``
  lookups of the same index.
- **events**: the key's rows of the mapping's ``events_table``
  (``event_tables``), by ``event_time_column`` / ``event_time_unit``.
- **connections**: a ``psycopg_pool`` pool per source, opened on first use;
  ``check()`` is ``SELECT 1`` within ``CHECK_SECONDS``, its message naming
  no URL.
"""

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from data_app.sources import event_tables, sql_columns
from data_app.sources.series import SeriesSource, StoreField
from data_app.sources.sqlite import unique_times
from rta_core.errors import NotFound
from rta_kit.grid import INT64_MAX, INT64_MIN

SETTINGS = ("RTA_SQL_SOURCES",)
UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
CHECK_SECONDS = 2.0  # /health waits this long for a connection and SELECT 1
CONNECT_SECONDS = 5  # libpq connect_timeout
WAIT_SECONDS = 10.0  # a read waits this long for a pooled connection (the database down: then it fails)
POOL_SIZE = 4  # connections per source (reads run in a few worker threads)
READ_PARTS = 2  # a long slice is read as this many consecutive time ranges at once (POOL_SIZE bounds it)
MIN_PART_NS = 10_000_000_000  # ... each at least this long
CATALOG_SECONDS = 30.0  # a table's columns are looked up again after this long
TIMESTAMP_TYPES = ("timestamp without time zone", "timestamp with time zone")
INTEGER_TYPES = ("smallint", "integer", "bigint")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_readers = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="rta-sql-read")


def from_settings(settings):
    return [SqlSource(name, url) for name, url in getattr(settings, "RTA_SQL_SOURCES", {}).items()]


class SourceDown(Exception):
    """The database cannot be reached (the message names no URL)."""


def table_identifier(name):
    """``schema.table`` or ``table`` as a quoted identifier."""
    parts = name.split(".") if name.count(".") == 1 else [name]
    return sql.Identifier(*parts)


class Table:
    """A table's columns as the catalog has them: ``{name: (type name, category)}`` in column order."""

    def __init__(self, columns):
        self.columns = columns

    def type_of(self, column):
        return self.columns.get(column, (None, None))[0]

    def fields(self, excluded):
        """Numeric and boolean columns, less ``excluded``."""
        return [n for n, (_, category) in self.columns.items() if category in ("N", "B") and n not in excluded]


PROPERTIES = ("table", "key_column", "time_column", "time_unit")  # mapping-level, each overridable per field


@dataclass(frozen=True)
class Layout:
    """Where rows are: table, key and time columns, time unit (and the time column's type): a read group."""

    table: str
    key: str
    time: str
    unit: str
    time_type: str


def layout_of(properties, table):
    """The ``Layout`` ``properties`` (``table``, ``key_column`` ...) describe in ``table``, or None."""
    if table is None or properties.get("key_column") not in table.columns:
        return None
    time_type = table.type_of(properties.get("time_column", ""))
    unit = properties.get("time_unit") or ("timestamp" if time_type in TIMESTAMP_TYPES else "ns")
    timestamp = unit == "timestamp" and time_type in TIMESTAMP_TYPES
    if not (timestamp or (unit in UNITS and time_type in INTEGER_TYPES)):
        return None
    return Layout(properties["table"], properties["key_column"], properties["time_column"], unit, time_type)


class SqlSource(SeriesSource):
    def __init__(self, name, url):
        self.name = name
        self._url = url
        self._pool = None
        self._lock = threading.Lock()
        self._tables = {}  # table name -> (Table or None, looked up at)

    # --- connections ------------------------------------------------------------------------------

    def pool(self):
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._url,
                    min_size=1,
                    max_size=POOL_SIZE,
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_SECONDS},
                    timeout=WAIT_SECONDS,
                    check=ConnectionPool.check_connection,
                    name=f"rta-source-{self.name}",
                    open=False,
                )
                self._pool.open(wait=False)
            return self._pool

    def _fetch(self, query, params, binary=False):
        return self._fetch_rows(query, params, binary)[1]

    def _fetch_rows(self, query, params, binary=False):
        """``(column names, rows)`` of a query."""
        with self.pool().connection() as connection, connection.cursor(binary=binary) as cursor:
            try:
                cursor.execute(query, params)
            except psycopg.DataError:  # the identity is not a value of the key column's type
                raise NotFound("no rows for this data identity") from None
            return [c.name for c in cursor.description or ()], cursor.fetchall()

    # --- catalog ----------------------------------------------------------------------------------

    def table(self, name):
        """The ``Table`` named ``name`` (None: no such table), cached for ``CATALOG_SECONDS``."""
        if not name:
            return None
        cached = self._tables.get(name)
        if cached is not None and time.monotonic() - cached[1] < CATALOG_SECONDS:
            return cached[0]
        with self.pool().connection() as connection:
            regclass = table_identifier(name).as_string(connection)
            rows = connection.execute(
                "SELECT a.attname, format_type(a.atttypid, NULL), t.typcategory"
                " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                [regclass],
            ).fetchall()
        if not rows:  # not remembered: the table may be created any moment
            return None
        table = Table({n: (type_name, category) for n, type_name, category in rows})
        self._tables[name] = (table, time.monotonic())
        return table

    def layout(self, mapping, field_properties=None):
        """The ``Layout`` of the mapping's properties, a field's overriding them; None when incomplete."""
        properties = {name: mapping.property(name) for name in PROPERTIES}
        properties.update({k: v for k, v in (field_properties or {}).items() if k in PROPERTIES and v})
        if not properties["table"]:
            return None
        return layout_of(properties, self.table(properties["table"]))

    # --- the source -------------------------------------------------------------------------------

    def store_fields(self, identity, mapping):
        default = self.layout(mapping)
        if not mapping.stored:  # the table's numeric columns
            found = [] if default is None else [(n, default, None) for n in self._columns(default)]
        else:  # mapped fields, each where its properties (or the mapping's) say
            found = []
            for f in mapping.fields:
                layout = self.layout(mapping, f.properties) if f.properties else default
                if layout is not None and f.name in self._columns(layout):
                    found.append((f.name, layout, f.channel))
        if not any(self._has_rows(identity, layout) for layout in dict.fromkeys(layout for _, layout, _ in found)):
            raise NotFound("no rows for this data identity")
        return [StoreField(name, layout, channel) for name, layout, channel in found]

    def _columns(self, layout):
        table = self.table(layout.table)
        return table.fields({layout.key, layout.time}) if table is not None else []

    def _has_rows(self, identity, layout):
        exists = sql.SQL("SELECT 1 FROM {} WHERE {} = %s LIMIT 1").format(
            table_identifier(layout.table), sql.Identifier(layout.key)
        )
        return bool(self._fetch(exists, [identity]))

    def time_range(self, identity, mapping, group):
        layout = group
        edge = sql.SQL("(SELECT {t} FROM {table} WHERE {key} = %s AND {t} IS NOT NULL ORDER BY {t} {order} LIMIT 1)")
        names = {"t": sql.Identifier(layout.time), "table": table_identifier(layout.table)}
        names["key"] = sql.Identifier(layout.key)
        query = sql.SQL("SELECT {}, {}").format(
            edge.format(order=sql.SQL("ASC"), **names), edge.format(order=sql.SQL("DESC"), **names)
        )
        ((first, last),) = self._fetch(query, [identity, identity])
        if first is None:
            return None
        return _to_ns(first, layout.unit), _to_ns(last, layout.unit)

    def read(self, identity, mapping, group, names, low, high):
        layout, table = group, self.table(group.table)
        if table is None or any(n not in table.columns for n in names):  # dropped or altered meanwhile
            return np.empty(0, np.int64), {}
        t = sql.Identifier(layout.time)
        columns = [sql_columns.time_expression(t, layout.time_type)]
        columns += [sql_columns.value_expression(sql.Identifier(n), table.columns[n][1]) for n in names]
        aliases = [sql.Identifier(f"c{i}") for i in range(len(columns))]
        query = sql.SQL(
            "SELECT {aggregates} FROM ("
            "SELECT {columns} FROM {table} WHERE {key} = %s AND {t} >= %s AND {t} < %s ORDER BY {t}"
            ") AS rows"
        ).format(
            aggregates=sql.SQL(", ").join(sql.SQL("string_agg({}, '')").format(a) for a in aliases),
            columns=sql.SQL(", ").join(sql.SQL("{} AS {}").format(c, a) for c, a in zip(columns, aliases, strict=True)),
            table=table_identifier(layout.table),
            key=sql.Identifier(layout.key),
            t=t,
        )
        # Long ranges are read as consecutive parts at once, each by its own backend (and core) of the database.
        parts = READ_PARTS if high - low >= READ_PARTS * MIN_PART_NS else 1
        cuts = [low + (high - low) * i // parts for i in range(parts)] + [high + 1]
        bounds = [_bounds(a, b, layout) for a, b in itertools.pairwise(cuts)]
        if parts == 1:
            results = [self._fetch(query, [identity, *bounds[0]], binary=True)[0]]
        else:
            results = list(_readers.map(lambda b: self._fetch(query, [identity, *b], binary=True)[0], bounds))
        results = [r for r in results if r[0] is not None]
        if not results:
            return np.empty(0, np.int64), {}
        timestamp = layout.unit == "timestamp"
        factor = 1 if timestamp else UNITS[layout.unit]
        times = np.concatenate([sql_columns.times(r[0], timestamp, factor) for r in results])
        values = {n: np.concatenate([sql_columns.values(r[i + 1]) for r in results]) for i, n in enumerate(names)}
        return unique_times(times, values)

    def event_rows(self, identity, mapping, start, end):
        """The identity's rows of the mapping's ``events_table`` (``event_tables``) in [start, end]: same key
        column, ``event_time_column`` / ``event_time_unit`` (default: the mapping's ``time_column`` ...)."""
        events_table = mapping.property("events_table")
        if not events_table:
            return []
        events = {"table": events_table, "time_column": mapping.property("event_time_column")}
        layout = self.layout(mapping, {**events, "time_unit": mapping.property("event_time_unit")})
        if layout is None:
            return []
        t = sql.Identifier(layout.time)
        query = sql.SQL("SELECT * FROM {table} WHERE {key} = %s AND {t} >= %s AND {t} < %s ORDER BY {t}").format(
            table=table_identifier(layout.table), key=sql.Identifier(layout.key), t=t
        )
        low = INT64_MIN if start is None else start
        high = INT64_MAX if end is None else end
        names, rows = self._fetch_rows(query, [identity, *_bounds(low, high + 1, layout)])
        name_field, status_field = event_tables.name_fields(mapping)
        out = []
        for values in rows:
            row = dict(zip(names, values, strict=True))
            when = _to_ns(row[layout.time], layout.unit)
            found = event_tables.event_row(when, row, name_field, status_field, skip=(layout.time, layout.key))
            if found is not None:
                out.append(found)
        return out

    def distinct_keys(self, table_name, key_column):
        """Every distinct key of a table as text, ascending: a loose index scan (one lookup per key)."""
        key = sql.Identifier(key_column)
        query = sql.SQL(
            "WITH RECURSIVE keys(k) AS ("
            "(SELECT {key} FROM {table} WHERE {key} IS NOT NULL ORDER BY {key} LIMIT 1)"
            " UNION ALL SELECT (SELECT {key} FROM {table} WHERE {key} > keys.k ORDER BY {key} LIMIT 1)"
            " FROM keys WHERE keys.k IS NOT NULL"
            ") SELECT k::text FROM keys WHERE k IS NOT NULL"
        ).format(key=key, table=table_identifier(table_name))
        return [k for (k,) in self._fetch(query, [])]

    def check(self):
        try:
            with self.pool().connection(timeout=CHECK_SECONDS) as connection:
                connection.execute("SELECT 1")
        except Exception:  # any failure: the message must not carry the URL or credentials
            raise SourceDown("the database does not answer") from None

    def close(self):
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _bounds(low, end, layout):
    """``[low, end)`` ns as values of the time column: whole units from the first at or after ``low`` up to the
    first at or after ``end`` (excluded), so consecutive ranges tile without a gap or an overlap."""
    if layout.unit == "timestamp":
        first = _EPOCH + timedelta(microseconds=-(-low // 1000))
        last = _EPOCH + timedelta(microseconds=-(-end // 1000))
        if layout.time_type == "timestamp without time zone":
            first, last = first.replace(tzinfo=None), last.replace(tzinfo=None)
        return first, last
    factor = UNITS[layout.unit]
    return -(-low // factor), -(-end // factor)


def _to_ns(value, unit):
    if unit == "timestamp":
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // timedelta(microseconds=1) * 1000
    return int(value) * UNITS[unit]
