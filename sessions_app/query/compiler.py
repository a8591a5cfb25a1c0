"""Compile the RTA session query dialect (a MongoDB subset) to one SQL condition.

Nothing is filtered in Python: ``compile_query`` returns ``(sql, params)`` for a
WHERE clause on the sessions table. Every malformed part raises
``InvalidArgument`` naming the path of the offending part (``$or[1].details.Run``).
Positive conditions are plain comparisons, which indexes can serve; negations
(``$not``, ``$neq``, ``$nin``, ``$nor``) wrap them in ``NOT COALESCE(.., FALSE)``
so that absent properties and values of another type match the negation, as
they do in MongoDB.
"""

import json
import math

from rta_core.errors import InvalidArgument, excerpt
from rta_core.timeutil import parse_timestamp
from sessions_app.models import SessionState
from sessions_app.query.properties import TABLE, CoreProperty, JsonSql, is_postgres, resolve

COMPARISONS = {"$eq": "=", "$neq": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
TEXT_MATCHES = ("$startsWith", "$endsWith", "$contains")
SETS = ("$in", "$nin")
LOGICAL = ("$and", "$or", "$nor")
MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def parse_query(text):
    """Parse query JSON text into a criteria object (empty text is no query)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        raise InvalidArgument("query must be a JSON string")
    try:
        query = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"query is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument(f"query nests deeper than {MAX_DEPTH} levels") from None
    return query


def compile_query(criteria):
    """SQL and parameters for a criteria object; ``("", [])`` matches everything."""
    if criteria is None or criteria == {}:
        return "", []
    return _criteria(criteria, "query", 0)


def _join(parts, glue):
    sql = f" {glue} ".join(f"({p[0]})" for p in parts)
    params = [v for p in parts for v in p[1]]
    return sql, params


def _negate(part):
    return f"NOT COALESCE(({part[0]}), FALSE)", part[1]


def _criteria(criteria, where, depth):
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{where}: query nests deeper than {MAX_DEPTH} levels")
    if not isinstance(criteria, dict):
        raise InvalidArgument(f"{where}: criteria must be a JSON object")
    if not criteria:
        return "1=1", []
    parts = []
    for key, value in criteria.items():
        path = _step(where, key)
        if key in LOGICAL:
            if not isinstance(value, list) or not value:
                raise InvalidArgument(f"{path}: expects a non-empty array of criteria")
            subs = [_criteria(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
            if key == "$and":
                parts.append(_join(subs, "AND"))
            elif key == "$or":
                parts.append(_join(subs, "OR"))
            else:
                parts.append(_negate(_join(subs, "OR")))
        elif key.startswith("$"):
            raise InvalidArgument(f"{path}: unknown logical operator {excerpt(key)} (expected $and, $or or $nor)")
        else:
            prop = _resolve(key, path)
            if isinstance(value, dict):
                parts.append(_condition(prop, value, path, depth + 1))
            else:
                parts.append(_compare(prop, "$eq", value, path))
    return _join(parts, "AND") if len(parts) > 1 else parts[0]


def _step(where, key, limit=64):
    """The path of ``key`` under ``where`` for messages, a long key (client input) cut short."""
    key = key if len(key) <= limit else f"{key[: limit - 1]}…"
    return f"{where}.{key}" if where != "query" else key


def _resolve(key, path):
    try:
        return resolve(key)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None


def _condition(prop, condition, path, depth):
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{path}: condition nests deeper than {MAX_DEPTH} levels")
    if len(condition) != 1:
        raise InvalidArgument(
            f"{path}: a condition object must hold exactly one operator, got {excerpt(sorted(condition))}"
        )
    ((op, operand),) = condition.items()
    where = _step(path, op)
    if op in COMPARISONS:
        return _compare(prop, op, operand, where)
    if op in TEXT_MATCHES:
        return _text_match(prop, op, operand, where)
    if op in SETS:
        if not isinstance(operand, list):
            raise InvalidArgument(f"{where}: expects an array of values")
        if not operand:
            return ("1=0", []) if op == "$in" else ("1=1", [])
        parts = [_compare(prop, "$eq", item, f"{where}[{i}]") for i, item in enumerate(operand)]
        joined = _join(parts, "OR")
        return joined if op == "$in" else _negate(joined)
    if op == "$not":
        if not isinstance(operand, dict):
            raise InvalidArgument(f"{where}: expects a condition object")
        return _negate(_condition(prop, operand, where, depth + 1))
    raise InvalidArgument(f"{where}: unknown operator {excerpt(op)}")


def _scalar_type(value, where):
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(f"{where}: {excerpt(value)} is not a finite number")
        return "number"
    if isinstance(value, str):
        _check_text(value, where)
        return "string"
    raise InvalidArgument(f"{where}: operand must be a string, number, boolean or null, not {type(value).__name__}")


def _compare(prop, op, operand, where):
    json_type = _scalar_type(operand, where)
    if json_type is None:
        if op not in ("$eq", "$neq"):
            raise InvalidArgument(f"{where}: null can only be compared with $eq or $neq")
        present = _present(prop)
        return present if op == "$neq" else _negate(present)
    if op == "$neq":
        return _negate(_compare(prop, "$eq", operand, where))
    sql_op = COMPARISONS[op]
    if isinstance(prop, CoreProperty):
        value = _core_operand(prop, operand, json_type, where)
        # Ordinal string order; equality keeps the column's own collation so its index serves it.
        ordinal = prop.kind == "text" and is_postgres() and sql_op not in ("=", "<>")
        column = prop.sql + (' COLLATE "C"' if ordinal else "")
        return f"{column} {sql_op} %s", [_sql_number(value)]
    json_sql = JsonSql(prop)
    if op == "$eq" and is_postgres():
        return json_sql.contains_value(operand)
    expr, params = json_sql.typed(json_type)
    return f"{expr} {sql_op} %s", params + [_json_operand(operand, json_type)]


def _json_operand(operand, json_type):
    if json_type == "boolean" and not is_postgres():
        return 1 if operand else 0
    return _sql_number(operand)


def _sql_number(value):
    """SQLite binds integers only within int64; beyond it a float compares the same way."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not INT64_MIN <= value <= INT64_MAX
        and not is_postgres()
    ):
        return float(value)
    return value


def _check_text(value, where):
    if "\x00" in value:
        raise InvalidArgument(f"{where}: strings must not contain NUL characters")


def _core_operand(prop, operand, json_type, where):
    kind = prop.kind
    if kind == "text":
        if json_type != "string":
            raise InvalidArgument(f"{where}: {prop.name} is a string; {json_type} operands do not apply")
        return operand
    if kind == "number":
        if json_type != "number":
            raise InvalidArgument(f"{where}: {prop.name} is a number; {json_type} operands do not apply")
        return operand
    if kind == "state":
        if json_type == "string":
            value = SessionState.value_of(operand) if isinstance(operand, str) else None
            if value is None:
                raise InvalidArgument(
                    f"{where}: unknown state {excerpt(operand)}; expected one of {', '.join(SessionState.labels)}"
                )
            return value
        if json_type == "number" and float(operand).is_integer():
            return int(operand)
        raise InvalidArgument(f"{where}: state operands are state names such as 'open' or 'closed'")
    # instant
    if json_type != "string":
        raise InvalidArgument(f"{where}: {prop.name} takes an ISO 8601 date-time string")
    try:
        return parse_timestamp(operand, prop.name).ns
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None


def _present(prop):
    if isinstance(prop, CoreProperty):
        return f"{prop.sql} IS NOT NULL", []
    return JsonSql(prop).present()


def _text_match(prop, op, operand, where):
    if not isinstance(operand, str):
        raise InvalidArgument(f"{where}: expects a string")
    _check_text(operand, where)
    if isinstance(prop, CoreProperty):
        if prop.kind == "instant" and prop.name == "timestamp":
            expr = f'"{TABLE}"."timestamp_text"'
        elif prop.kind != "text":
            raise InvalidArgument(f"{where}: text matches apply to string properties; {prop.name} is not one")
        else:
            expr = prop.sql
        params = []
    else:
        expr, params = JsonSql(prop).typed("string")
    if operand == "":
        return f"{expr} IS NOT NULL", params
    n = len(operand)
    if is_postgres():
        sql = {
            "$startsWith": f"left({expr}, {n}) = %s",
            "$endsWith": f"right({expr}, {n}) = %s",
            "$contains": f"strpos({expr}, %s) > 0",
        }[op]
    else:
        sql = {
            "$startsWith": f"substr({expr}, 1, {n}) = %s",
            "$endsWith": f"substr({expr}, -{n}) = %s",
            "$contains": f"instr({expr}, %s) > 0",
        }[op]
    return sql, params + [operand]
