"""A column of PostgreSQL rows as one binary string, read by numpy in place (the SQL source's bulk read).

Each column of the scanned rows is aggregated into one ``bytea``: the
concatenation of each value's binary send form (``float8send``: a big-endian
double; ``int8send``; ``timestamp(tz)_send``: big-endian µs since 2000-01-01),
``string_agg(..., '')`` over the ordered scan. PostgreSQL builds it with less
work than an array (no per-element length, no array header), it arrives as
one value, and numpy views it: no Python object per sample. Values must not be
NULL (the query coalesces them to NaN).
"""

import numpy as np
from psycopg import sql

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 (PostgreSQL's timestamp epoch) in µs since the Unix epoch
TIME_SEND = {"timestamp without time zone": "timestamp_send", "timestamp with time zone": "timestamptz_send"}


def time_expression(column, type_name):
    """The binary form of a time column: timestamps as they are, integers as int8."""
    if type_name in TIME_SEND:
        return sql.SQL("{}({})").format(sql.SQL(TIME_SEND[type_name]), column)
    return sql.SQL("int8send({}::int8)").format(column)


def value_expression(column, category):
    """The binary form of a numeric (``N``) or boolean (``B``) column as f64, NULL as NaN."""
    cast = sql.SQL("::int::float8" if category == "B" else "::float8")
    return sql.SQL("float8send(COALESCE({}{}, 'NaN'))").format(column, cast)


def times(raw, timestamp, factor=1):
    """int64 ns from a time column's bytes (timestamps: µs since 2000; integers: ``factor`` ns each)."""
    values = np.frombuffer(raw, ">i8").astype(np.int64)
    if timestamp:
        return (values + PG_EPOCH_US) * 1000
    return values * factor


def values(raw):
    return np.frombuffer(raw, ">f8").astype(np.float64)
