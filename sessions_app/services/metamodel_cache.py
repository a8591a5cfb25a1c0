"""Exactly fresh reuse of the metamodel's detail values (PostgreSQL).

Collecting the distinct detail values of a scope expands every session's JSON object
(1 M values for 100,000 sessions × 10 details: ~0.5 s). The answer depends only on the
multiset of JSON objects in scope, so each answer is kept with two fingerprints of what
it was computed from, and every call re-checks them *in the same statement (snapshot)*
that would compute the values, which PostgreSQL skips (a one-time filter) when one of
them matches:

- rows: count and sum of hash(ctid, xmin) of the sessions in scope. A row version is
  immutable, so an unchanged set of visible versions means unchanged data (~45 ms per
  100,000 sessions). Any write to a session (a heartbeat too) changes it.
- content: count and sum of hash(JSON text) of the column in scope, computed only when
  an answer is kept and the rows fingerprint differs (~160 ms). Writes that leave the
  JSON alone (heartbeats, state, folders that keep the scope) keep it: still reused.

A request never gets an answer older than its own snapshot: a committed write it can see
changes a fingerprint (barring a 64-bit hash-sum collision) and the values are computed
afresh, in that same statement. Entries live per process, least recently used dropped
beyond RTA_METAMODEL_CACHE_ENTRIES (0 turns reuse off).

Entries are keyed on the question and on the caller's folders (``Access.folders``, spec
§15): an answer computed for one folder scope is never offered to another, even before the
fingerprints are compared.
"""

import threading
from collections import OrderedDict

from django.conf import settings
from django.db import connection

_lock = threading.Lock()
_entries = OrderedDict()  # key -> (rows fingerprint, content fingerprint, rows)
# Hit/miss counts for tests and diagnostics: "rows" and "content" are reuses, "computed" misses.
stats = {"rows": 0, "content": 0, "computed": 0}


def clear():
    with _lock:
        _entries.clear()
        for name in stats:
            stats[name] = 0


def _capacity():
    size = settings.RTA_METAMODEL_CACHE_ENTRIES
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError("RTA_METAMODEL_CACHE_ENTRIES must be a non-negative integer")
    return size


def _lookup(key):
    with _lock:
        entry = _entries.get(key)
        if entry is not None:
            _entries.move_to_end(key)
        return entry


def _store(key, entry, capacity, outcome):
    with _lock:
        stats[outcome] += 1
        _entries[key] = entry
        _entries.move_to_end(key)
        while len(_entries) > capacity:
            _entries.popitem(last=False)


def _sql(table, scope, column, values_sql):
    """One statement: both fingerprints of the scope and, unless one matches, the values.

    The placeholders are: scope params (rows fingerprint), scope params (content
    fingerprint), whether an answer is kept, the known rows fingerprint, values params, then
    both known fingerprints.
    """
    # ctid ends with ")", so the concatenation cannot make two pairs alike.
    rows_hash = "hashtextextended(s.ctid::text || s.xmin::text, 0)"
    content_hash = f's."{column}"::text'
    rows_changed = "(SELECT (n, h) FROM rows_fp) IS DISTINCT FROM (%s::bigint, %s::numeric)"
    content_changed = "(SELECT (n, h) FROM content_fp) IS DISTINCT FROM (%s::bigint, %s::numeric)"
    # The content fingerprint only pays off once an answer is kept (%s::boolean says so).
    gate = f"%s::boolean AND {rows_changed}"
    content_where = f"{scope} AND {gate}" if scope else f" WHERE {gate}"
    return (
        f"WITH rows_fp AS MATERIALIZED (SELECT count(*) AS n, sum({rows_hash}) AS h FROM {table} s{scope}), "
        f"content_fp AS MATERIALIZED (SELECT count(*) AS n, sum(hashtextextended({content_hash}, 0)) AS h "
        f"FROM {table} s{content_where}) "
        "SELECT 0, n, h, NULL, NULL, NULL FROM rows_fp "
        "UNION ALL SELECT 1, n, h, NULL, NULL, NULL FROM content_fp "
        f"UNION ALL SELECT 2, NULL, NULL, v.* FROM ({values_sql}) v WHERE {rows_changed} AND {content_changed}"
    )


def detail_rows(key, access_folders, table, scope, scope_params, column, values_sql, values_params):
    """The ``(key, type, value)`` rows ``values_sql`` returns, reused while their data is unchanged.

    ``key`` names the question (column, path, scope); ``access_folders`` the caller's folders
    (``None``: not folder-restricted), part of the key. ``values_sql`` aggregates ``column`` of
    the sessions ``table`` (aliased ``s``) restricted by ``scope`` (`` WHERE ...`` or "").
    """
    capacity = _capacity()
    if capacity == 0:
        with connection.cursor() as cursor:
            cursor.execute(values_sql, values_params)
            return cursor.fetchall()
    folders = None if access_folders is None else tuple(sorted(access_folders))
    key = (connection.alias, connection.settings_dict.get("NAME"), folders, key)
    entry = _lookup(key)
    # known_content is None until computed: the gated CTE's (0, NULL) is no fingerprint.
    known_rows, known_content, cached = entry if entry else ((None, None), None, None)
    params = [
        *scope_params,
        *scope_params,
        cached is not None,
        *known_rows,
        *values_params,
        *known_rows,
        *(known_content or (None, None)),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_sql(table, scope, column, values_sql), params)
        result = cursor.fetchall()
    rows_fp = content_fp = None
    values = []
    for tag, n, h, *row in result:
        if tag == 0:
            rows_fp = (n, h)
        elif tag == 1:
            content_fp = (n, h)
        else:
            values.append(tuple(row))
    if cached is not None and rows_fp == known_rows:
        _store(key, entry, capacity, "rows")
        return cached
    if cached is None:
        content_fp = None  # not computed (gated off)
    elif known_content is not None and content_fp == known_content:
        _store(key, (rows_fp, known_content, cached), capacity, "content")
        return cached
    _store(key, (rows_fp, content_fp, values), capacity, "computed")
    return values
