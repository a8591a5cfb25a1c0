"""InfluxQL for the InfluxDB source: quoting, the identity's filter expression, and reading answers fast.

The identity is a *trusted* filter expression (the toolkit's contract), put in
brackets into ``WHERE (...)``. Trusted, yet checked: outside string literals,
quoted identifiers and regular expressions it may not hold ``;`` (a second
statement), a comment (``--``, ``/*``) or a bracket closing what it did not
open, so it can only ever filter the one measurement read. Anything else is
``NotFound`` (no data), and the expression is never echoed.

Samples are read by ``influx_msgpack``.
"""

from rta_core.errors import NotFound

MIN_TIME, MAX_TIME = -9223372036854775806, 9223372036854775806  # InfluxDB's own time limits
# Field types served: integers as f64 too (what they go out as, and a field may be an integer in one shard
# and a float in another), booleans as 0/1.
NUMERIC_TYPES = frozenset(("float", "integer", "boolean"))


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


class QueryFailed(Exception):
    """InfluxDB answered a query with an error (its text may echo the query: never shown)."""
