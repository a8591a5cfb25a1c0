"""Session properties as the query dialect and sort keys name them, mapped to SQL.

A property is either a core column (with the operand type it compares as) or
a value inside the ``details`` / ``ext_details`` JSON documents. JSON values
are typed: a comparison only matches values of the operand's JSON type.
"""

from dataclasses import dataclass

from django.db import connection

from rta_core.errors import InvalidArgument, excerpt
from sessions_app.models import Session

TABLE = Session._meta.db_table

# kind: "text" compares strings ordinally; "number" numerically; "state" by state number
# (operands are state names); "instant" takes ISO 8601 operands and compares instants in ns.
CORE = {
    "identity": ("identity", "text"),
    "identifier": ("identifier", "text"),
    "type": ("type", "text"),
    "group": ("group", "text"),
    "version": ("version", "text"),
    "quality": ("quality", "number"),
    "state": ("state", "state"),
    "timestamp": ("timestamp_ns", "instant"),
    "startTimestamp": ("start_time", "instant"),
    "endTimestamp": ("end_time", "instant"),
    "timeRange.startTime": ("start_time", "number"),
    "timeRange.endTime": ("end_time", "number"),
}


@dataclass(frozen=True)
class CoreProperty:
    name: str
    column: str
    kind: str

    @property
    def sql(self):
        return f'"{TABLE}"."{self.column}"'


@dataclass(frozen=True)
class JsonProperty:
    """``details.<key>`` or ``extDetails.<group>.<key>``."""

    name: str
    column: str
    path: tuple


def resolve(name):
    """The property a dialect key or sort key names; InvalidArgument if it names none."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("property names must be non-empty strings")
    if "\x00" in name:
        raise InvalidArgument("property names must not contain NUL characters")
    if name in CORE:
        column, kind = CORE[name]
        return CoreProperty(name, column, kind)
    if name.startswith("details.") and len(name) > len("details."):
        return JsonProperty(name, "details", (name[len("details.") :],))
    if name.startswith("extDetails."):
        group, _, key = name[len("extDetails.") :].partition(".")
        if group and key:
            return JsonProperty(name, "ext_details", (group, key))
    raise InvalidArgument(f"unknown session property {excerpt(name)}")


def is_postgres():
    return connection.vendor == "postgresql"


class JsonSql:
    """SQL fragments reading a typed JSON value, for PostgreSQL (jsonb) or SQLite (JSON1)."""

    def __init__(self, prop):
        self.prop = prop
        self.column = f'"{TABLE}"."{prop.column}"'
        self.pg = is_postgres()

    def _pg_value(self):
        """``column -> k1 -> k2`` with each key a parameter."""
        return self.column + "".join(" -> %s" for _ in self.prop.path), list(self.prop.path)

    def _sqlite_path(self):
        return "$" + "".join('."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"' for key in self.prop.path)

    def present(self):
        if self.pg:
            expr, params = self._pg_value()
            return f"({expr}) IS NOT NULL", params
        return f"json_type({self.column}, %s) IS NOT NULL", [self._sqlite_path()]

    def typed(self, json_type):
        """An expression equal to the value when it has ``json_type`` (string/number/boolean), else NULL."""
        if self.pg:
            expr, params = self._pg_value()
            cast = {
                "number": f"({expr})::numeric",
                "string": f"({expr}) #>> '{{}}'",
                "boolean": f"({expr})::boolean",
            }[json_type]
            collate = ' COLLATE "C"' if json_type == "string" else ""
            return f"(CASE WHEN jsonb_typeof({expr}) = '{json_type}' THEN {cast} END){collate}", params * 2
        path = self._sqlite_path()
        if json_type == "number":
            return (
                f"(CASE WHEN json_type({self.column}, %s) IN ('integer', 'real') "
                f"THEN json_extract({self.column}, %s) END)",
                [path, path],
            )
        if json_type == "string":
            return (
                f"(CASE WHEN json_type({self.column}, %s) = 'text' THEN json_extract({self.column}, %s) END)",
                [path, path],
            )
        return f"(CASE json_type({self.column}, %s) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)", [path]

    def type_rank(self):
        """0 number, 1 string, 2 boolean, 3 absent: the order typed sorts group values in."""
        if self.pg:
            expr, params = self._pg_value()
            return (
                f"(CASE jsonb_typeof({expr}) WHEN 'number' THEN 0 WHEN 'string' THEN 1 "
                "WHEN 'boolean' THEN 2 ELSE 3 END)",
                params,
            )
        return (
            f"(CASE json_type({self.column}, %s) WHEN 'integer' THEN 0 WHEN 'real' THEN 0 "
            "WHEN 'text' THEN 1 WHEN 'true' THEN 2 WHEN 'false' THEN 2 ELSE 3 END)",
            [self._sqlite_path()],
        )

    def contains_value(self, value):
        """PostgreSQL: equality through jsonb containment, which the GIN index serves."""
        import json

        doc = value
        for key in reversed(self.prop.path):
            doc = {key: doc}
        return f"{self.column} @> %s::jsonb", [json.dumps(doc)]
