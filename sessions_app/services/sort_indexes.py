"""Expression indexes that let PostgreSQL serve sorts by detail values from an index.

Sorting 100k sessions by a detail key otherwise evaluates the typed sort terms
for every row (about 140 ms); with an index per (key, direction) built from the
very terms ``sessions_app.query.sorting`` orders by, a page is an index scan
(under 1 ms). Which keys deserve one is the operator's call (each index costs
writes), named in ``RTA_INDEXED_DETAILS`` (applied after ``migrate``) or
managed with ``manage.py index_details``. PostgreSQL only: SQLite sorts scan.

Index names carry a hash of the property; the property and direction are kept
in the index comment so ``list_indexes`` can report them.
"""

import hashlib

from django.db import connection

from rta_core.errors import InvalidArgument, excerpt
from sessions_app.query.properties import CORE, TABLE, resolve
from sessions_app.query.sorting import json_sort_terms

PREFIX = "rta_sort_"
DIRECTIONS = ("asc", "desc")


def json_property(name):
    """The JSON property ``name`` names (``details.X``, a bare key ``X`` or ``extDetails.G.X``)."""
    if name in CORE:
        raise InvalidArgument(f"{excerpt(name)} is a core property (name a detail as details.{name})")
    if not name.startswith(("details.", "extDetails.")):
        name = f"details.{name}"
    return resolve(name)


def index_name(prop, direction):
    digest = hashlib.sha1(prop.name.encode()).hexdigest()[:16]
    return f"{PREFIX}{digest}_{direction}"


def index_sql(prop, direction):
    """CREATE INDEX CONCURRENTLY for ``prop`` sorted ``direction`` (terms as the sort compiles them)."""
    columns = []
    for sql, params, descending in json_sort_terms(prop, direction == "desc"):
        expr = connection.ops.compose_sql(sql, params)
        order = "" if descending is None else (" DESC NULLS LAST" if descending else " ASC NULLS LAST")
        columns.append(f"({expr}){order}")
    columns.append('"identity"')
    return (
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{index_name(prop, direction)}" ON "{TABLE}" ({", ".join(columns)})'
    )


def _require_postgres():
    if connection.vendor != "postgresql":
        raise InvalidArgument("detail sort indexes need PostgreSQL (the embedded SQLite database sorts by scanning)")


def create_indexes(names):
    """Create the asc and desc index of each property (no-op for those that exist); returns the indexes made."""
    _require_postgres()
    props = [json_property(n) for n in names]
    made = []
    existing = {row["name"] for row in list_indexes()}
    for prop in props:
        for direction in DIRECTIONS:
            name = index_name(prop, direction)
            if name in existing:
                continue
            # CONCURRENTLY: sessions stay writable while the index builds (it cannot run in a transaction).
            with connection.cursor() as cursor:
                cursor.execute(index_sql(prop, direction))
                cursor.execute(f'COMMENT ON INDEX "{name}" IS %s', [f"{prop.name} {direction}"])
            made.append(name)
    return made


def drop_indexes(names):
    _require_postgres()
    dropped = []
    existing = {row["name"] for row in list_indexes()}
    for prop in [json_property(n) for n in names]:
        for direction in DIRECTIONS:
            name = index_name(prop, direction)
            if name in existing:
                with connection.cursor() as cursor:
                    cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
                dropped.append(name)
    return dropped


def list_indexes():
    """``[{"name", "property", "direction", "bytes", "valid"}]`` for every detail sort index."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class'), pg_relation_size(c.oid), i.indisvalid "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND c.relname LIKE %s ORDER BY 2",
            [TABLE, PREFIX.replace("_", r"\_") + "%"],
        )
        rows = cursor.fetchall()
    out = []
    for name, comment, size, valid in rows:
        prop, _, direction = (comment or "").rpartition(" ")
        out.append({"name": name, "property": prop, "direction": direction, "bytes": size, "valid": valid})
    return out
