"""InfluxQL for the InfluxDB source: quoting, the identity's filter expression, and reading answers fast.

The identity is a *trusted* filter expression (the toolkit's contract), put in
brackets into ``WHERE (...)``. Trusted, yet checked: outside string literals,
quoted identifiers and regular expressions it may not hold ``;`` (a second
statement), a comment (``--``, ``/*``) or a bracket closing what it did not
open, so it can only ever filter the one measurement read. Anything else is
``NotFound`` (no data), and the expression is never echoed.

Samples come back as CSV (``Accept: application/csv``, chunked), parsed by
pyarrow's multi-threaded CSV reader straight into columns: far faster than
JSON, which builds a Python object per value.
"""

import csv
import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from rta_core.errors import NotFound

MIN_TIME, MAX_TIME = -9223372036854775806, 9223372036854775806  # InfluxDB's own time limits
BLOCK_BYTES = 4 << 20  # CSV text parsed at a time
# Field types served, as parsed from the CSV: integers as f64 too (what they go out as, and a field may be
# an integer in one shard and a float in another), booleans as 0/1.
ARROW_TYPES = {"float": pa.float64(), "integer": pa.float64(), "boolean": pa.bool_()}


def refused():
    return NotFound("no such data in this source")


def identifier(name):
    """``name`` as an InfluxQL quoted identifier."""
    return '"' + str(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(text):
    """``text`` as an InfluxQL string literal."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def source_of(database, retention_policy, measurement):
    return ".".join(identifier(part) for part in (database, retention_policy, measurement))


def checked_filter(expression):
    """``(expression)`` if it is one self-contained filter (see the module doc), else ``NotFound``."""
    text = expression if isinstance(expression, str) else ""
    if not text.strip() or "\0" in text:
        raise refused()
    depth, i, n, last = 0, 0, len(text), ""
    while i < n:
        c = text[i]
        if c in "'\"":
            i = _closing(text, i, c)
            last = c
            continue
        if c == "/":
            if not (last.endswith("=~") or last.endswith("!~")):
                raise refused()  # a comment, or a regular expression where none can be
            i = _closing(text, i, "/")
            last = "/"
            continue
        if c == ";" or (c == "-" and text.startswith("--", i)):
            raise refused()
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise refused()
        if not c.isspace():
            last = (last + c)[-2:]
        i += 1
    if depth:
        raise refused()
    return f"({text})"


def _closing(text, start, quote):
    """The index after the literal opened by ``quote`` at ``start`` (backslash escapes); refused if unclosed."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise refused()


def select(fields, source, where, low, high, suffix=""):
    """``SELECT "f1","f2" FROM source WHERE where AND time >= low AND time <= high`` (ns, within Influx's range)."""
    low, high = max(low, MIN_TIME), min(high, MAX_TIME)
    columns = ",".join(identifier(f) for f in fields)
    return f"SELECT {columns} FROM {source} WHERE {where} AND time >= {low} AND time <= {high}{suffix}"


def parse_csv(body, types):
    """``(times, {field: values})`` of a whole CSV answer (bytes); see ``read_csv``."""
    return read_csv(iter([body]), types)


def read_csv(pieces, types):
    """``(times, {field: values})`` of a CSV answer (``name,tags,time,<fields>``) arriving as byte ``pieces``.

    Parsed as it arrives, a block at a time, so the answer's text is never held whole. ``types``:
    ``{field: InfluxDB type}`` of the fields selected; NaN where a field is empty. Without GROUP BY an
    answer is one series: one header line.
    """
    stream = io.BufferedReader(_Pieces(pieces), buffer_size=1 << 20)
    header = stream.readline().rstrip(b"\r\n")
    while not header and stream.peek(1):
        header = stream.readline().rstrip(b"\r\n")
    if not header:
        return np.empty(0, np.int64), {}
    names = _header_names(header)
    if names[:3] != ["name", "tags", "time"]:
        raise QueryFailed()  # an "error" answer, or not what a SELECT answers
    fields = names[3:]
    convert = pacsv.ConvertOptions(
        column_types={"time": pa.int64(), **{f: ARROW_TYPES.get(types.get(f), pa.float64()) for f in fields}},
        include_columns=["time", *fields],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    options = pacsv.ReadOptions(column_names=names, block_size=BLOCK_BYTES)
    try:
        reader = pacsv.open_csv(stream, read_options=options, convert_options=convert)
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return np.empty(0, np.int64), {}
        raise QueryFailed() from None
    times = _numpy(table.column("time"))
    return times, {f: _numpy(table.column(f)) for f in fields}


class _Pieces(io.RawIOBase):
    """A raw stream over an iterator of byte strings (an HTTP body as it arrives)."""

    def __init__(self, pieces):
        self._pieces, self._piece, self._at = pieces, b"", 0

    def readable(self):
        return True

    def readinto(self, buffer):
        while self._at >= len(self._piece):
            self._piece, self._at = next(self._pieces, None), 0
            if self._piece is None:
                self._piece = b""
                return 0
        n = min(len(buffer), len(self._piece) - self._at)
        buffer[:n] = memoryview(self._piece)[self._at : self._at + n]
        self._at += n
        return n


def _header_names(header):
    """Column names of a CSV header line (names may be quoted)."""
    return next(csv.reader([header.decode("utf-8", "replace")]), [])


def _numpy(column):
    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        if pa.types.is_boolean(column.type) or pa.types.is_integer(column.type):
            column = column.cast(pa.float64())
        return column.to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(column.type):
        return column.to_numpy(zero_copy_only=False).astype(np.uint8)
    return column.to_numpy(zero_copy_only=False)


class QueryFailed(Exception):
    """InfluxDB answered a query with an error (its text may echo the query: never shown)."""
