"""Typed multi-key sorts: ``prop:asc|desc`` directives compiled to ORDER BY expressions.

Unknown or unsortable keys are ignored, never an error. Details sort by type
first (numbers, then strings, then booleans, absent last) and within a type by
value, so numbers sort numerically and strings ordinally.
"""

from django.db.models import F
from django.db.models.expressions import RawSQL

from rta_core.errors import InvalidArgument
from sessions_app.query.properties import CoreProperty, JsonSql, is_postgres, resolve

DEFAULT_SORTS = ("timestamp:desc",)


def parse_sort(directive):
    """``(property, descending)`` or None when the directive is not usable."""
    if not isinstance(directive, str):
        return None
    name, _, direction = directive.strip().rpartition(":")
    if not name:
        name, direction = direction, "asc"
    direction = direction.strip().lower()
    if direction not in ("asc", "desc"):
        # A colon inside the property name, with no direction given.
        name, direction = directive.strip(), "asc"
    try:
        return resolve(name.strip()), direction == "desc"
    except InvalidArgument:
        return None


def order_by(sorts):
    """ORDER BY expressions for the directives, ending with identity for stable paging."""
    parsed = [p for p in (parse_sort(s) for s in (sorts or ())) if p is not None]
    if not parsed:
        parsed = [parse_sort(s) for s in DEFAULT_SORTS]
    expressions = []
    for prop, descending in parsed:
        expressions.extend(_prop_order(prop, descending))
    expressions.append(F("identity").asc())
    return expressions


def _ordered(expr, descending):
    return expr.desc(nulls_last=True) if descending else expr.asc(nulls_last=True)


def _prop_order(prop, descending):
    if isinstance(prop, CoreProperty):
        if prop.kind == "text" and is_postgres():
            return [_ordered(RawSQL(f'{prop.sql} COLLATE "C"', []), descending)]
        return [_ordered(F(prop.column), descending)]
    out = []
    for sql, params, term_descending in json_sort_terms(prop, descending):
        expr = RawSQL(sql, params)
        out.append(_ordered(expr, term_descending) if term_descending is not None else expr.asc())
    return out


def json_sort_terms(prop, descending):
    """``(sql, params, descending)`` per ORDER BY term of a JSON property sort.

    The type rank always ascends (descending None: plain ASC); the typed values
    follow the requested direction with NULLs last. ``sessions_app.services.
    sort_indexes`` builds its expression indexes from these same terms, which
    is what lets PostgreSQL serve a detail sort from an index.
    """
    json_sql = JsonSql(prop)
    terms = [(*json_sql.type_rank(), None)]
    for json_type in ("number", "string", "boolean"):
        terms.append((*json_sql.typed(json_type), descending))
    return terms
