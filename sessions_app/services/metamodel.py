"""The session metamodel (spec §6): capabilities, and values aggregated in SQL per folder scope.

Every value comes from the sessions the caller's ``Access`` reaches (``scope``): a token limited to
some folders never sees a detail value, bound or type of a session outside them.
"""

import json

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Max, Min

from rta_core.access import Access
from rta_core.timeutil import format_ns, parse_timestamp
from sessions_app.query.properties import CORE, TABLE, is_postgres
from sessions_app.services import metamodel_cache
from sessions_app.services.listing import scoped_sessions
from sessions_app.services.rendering import offset_minutes

# Every property the list endpoint can filter on can also sort it (sessions_app.query).
CAPABILITIES = {"filter": True, "sort": True}
LABELS = {
    "identity": "Identity",
    "identifier": "Identifier",
    "state": "State",
    "timestamp": "Timestamp",
    "startTimestamp": "Start",
    "endTimestamp": "End",
    "type": "Type",
    "quality": "Quality",
    "group": "Group",
    "version": "Version",
}


def _scope_sql(folder, access):
    """``(sql, params)`` restricting the sessions table to the scope, or ("", [])."""
    qs = scoped_sessions(folder, access=access)
    if qs.query.where:
        try:
            inner, params = qs.values("identity").query.sql_with_params()
        except EmptyResultSet:
            # A folder that does not exist: nothing is in scope.
            return " WHERE 1=0", []
        return f' WHERE s."identity" IN ({inner})', list(params)
    return "", []


def _fetch(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _timestamp_bounds(qs):
    first = qs.order_by("timestamp_ns").values_list("timestamp_text", flat=True).first()
    last = qs.order_by("-timestamp_ns").values_list("timestamp_text", flat=True).first()
    return first, last


def _descriptor(constraints=None):
    out = {"capabilities": dict(CAPABILITIES)}
    if constraints:
        out["constraints"] = constraints
    return out


def _distinct(qs, field):
    limit = settings.RTA_METAMODEL_MAX_VALUES
    return list(
        qs.exclude(**{f"{field}__isnull": True}).order_by(field).values_list(field, flat=True).distinct()[:limit]
    )


def metamodel(folder=None, props=(), access=Access.ANONYMOUS_FULL):
    qs = scoped_sessions(folder, access=access)
    agg = qs.aggregate(
        min_start=Min("start_time"),
        max_start=Max("start_time"),
        min_end=Min("end_time"),
        max_end=Max("end_time"),
        min_quality=Min("quality"),
        max_quality=Max("quality"),
    )
    out = {"state": dict(CAPABILITIES)}
    first, last = _timestamp_bounds(qs)
    out["timestamp"] = _descriptor({"minimum": first, "maximum": last} if first else None)
    offset = offset_minutes(first) if first else 0
    for name, lo, hi in (("startTimestamp", "min_start", "max_start"), ("endTimestamp", "min_end", "max_end")):
        bounds = None
        if agg[lo] is not None:
            bounds = {"minimum": format_ns(agg[lo], offset), "maximum": format_ns(agg[hi], offset)}
        out[name] = _descriptor(bounds)
    out["identifier"] = _descriptor()
    out["type"] = _descriptor({"values": _distinct(qs, "type")})
    quality = None
    if agg["min_quality"] is not None:
        quality = {"minimum": agg["min_quality"], "maximum": agg["max_quality"]}
    out["quality"] = _descriptor(quality)
    out["group"] = _descriptor({"values": _distinct(qs, "group")})
    out["version"] = _descriptor({"values": _distinct(qs, "version")})
    out["details"] = _detail_descriptors(folder, access, "details", ())
    out["extDetails"] = _ext_groups(folder, access, props)
    return out


def _json_each(column, path):
    """FROM-clause fragment enumerating (key, type, value-as-JSON-text) of a JSON object column."""
    if is_postgres():
        target = f's."{column}"' + "".join(" -> %s" for _ in path)
        return f"jsonb_each({target}) d", "d.key", "jsonb_typeof(d.value)", "d.value::text", list(path)
    target = f's."{column}"'
    json_path = "$" + "".join('."' + p.replace('"', '\\"') + '"' for p in path)
    # json_each's atom is NULL for objects/arrays; quote() renders strings as SQL literals, so use json_quote.
    return (
        f"json_each({target}, %s) d",
        "d.key",
        "d.type",
        "CASE WHEN d.type IN ('text') THEN json_quote(d.value) ELSE d.value END",
        [json_path],
    )


def _detail_values(folder, access, column, path):
    """``{key: (types, [values])}`` for the JSON object at ``column``/``path`` over the scope."""
    source, key, jtype, value, params = _json_each(column, path)
    scope, scope_params = _scope_sql(folder, access)
    if is_postgres():
        # A jsonb value's text determines its type: group on (key, text) and type only the
        # distinct rows (bench/sessions_rest.py: ~10% less time on 1M detail values).
        sql = (
            f"SELECT g.k, jsonb_typeof(g.v::jsonb), g.v FROM (SELECT {key} AS k, {value} AS v "
            f"FROM {TABLE} s, {source}{scope} GROUP BY 1, 2) g"
        )
    else:
        sql = f"SELECT {key}, {jtype}, {value} FROM {TABLE} s, {source}{scope} GROUP BY {key}, {jtype}, {value}"
    if is_postgres():
        # Reused while the scope's data is unchanged, checked in the same statement (metamodel_cache);
        # kept per caller scope (the access's folders), so no answer serves another scope.
        rows = metamodel_cache.detail_rows(
            (column, tuple(path), scope, tuple(scope_params)),
            access.folders,
            TABLE,
            scope,
            scope_params,
            column,
            sql,
            params + scope_params,
        )
    else:
        rows = _fetch(sql, params + scope_params)
    found = {}
    for k, t, v in rows:
        types, values = found.setdefault(k, (set(), []))
        types.add(_normal_type(t, v))
        values.append(_decode(t, v))
    return found


def _normal_type(json_type, value):
    if json_type in ("true", "false", "boolean"):
        return "boolean"
    if json_type == "integer" or (json_type == "number" and _is_integer(value)):
        return "integer"
    if json_type in ("real", "number"):
        return "number"
    return "string"


def _is_integer(text):
    try:
        return float(text).is_integer() and "." not in str(text) and "e" not in str(text).lower()
    except (TypeError, ValueError):
        return False


def _decode(json_type, value):
    if json_type == "true":
        return True
    if json_type == "false":
        return False
    if isinstance(value, (int, float)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _detail_type(types, values):
    if types == {"integer"}:
        return "integer"
    if types <= {"integer", "number"}:
        return "number"
    if types == {"boolean"}:
        return "boolean"
    if types == {"string"} and values and all(_is_datetime(v) for v in values):
        return "dateTime"
    return "string"


def _is_datetime(value):
    try:
        parse_timestamp(value)
        return True
    except Exception:
        return False


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _detail_descriptors(folder, access, column, path, only=None):
    limit = settings.RTA_METAMODEL_MAX_VALUES
    out = {}
    for key, (types, values) in sorted(_detail_values(folder, access, column, path).items()):
        if only is not None and key not in only:
            continue
        unique = sorted({json.dumps(v): v for v in values}.values(), key=_sort_key)
        out[key] = {
            "label": key,
            "type": _detail_type(types, unique),
            "capabilities": dict(CAPABILITIES),
            "constraints": {"values": unique[:limit]},
        }
    return out


def _ext_groups(folder, access, props):
    """Groups are listed by label; their properties only when asked for with ``prop``."""
    scope, scope_params = _scope_sql(folder, access)
    if is_postgres():
        # Empty objects have no keys: skipping them spares a function call per session.
        nonempty = (" AND " if scope else " WHERE ") + "s.ext_details <> '{}'::jsonb"
        sql = f"SELECT DISTINCT jsonb_object_keys(s.ext_details) FROM {TABLE} s{scope}{nonempty}"
    else:
        sql = f"SELECT DISTINCT d.key FROM {TABLE} s, json_each(s.ext_details) d{scope}"
    groups = sorted(row[0] for row in _fetch(sql, scope_params))
    wanted = {}
    for prop in props or ():
        if prop == "extDetails":
            wanted = {g: None for g in groups}
            break
        if prop.startswith("extDetails."):
            group, _, key = prop[len("extDetails.") :].partition(".")
            if key:
                if wanted.get(group, set()) is not None:
                    wanted.setdefault(group, set()).add(key)
            else:
                wanted[group] = None
    out = {}
    for group in groups:
        properties = {}
        if group in wanted:
            properties = _detail_descriptors(folder, access, "ext_details", (group,), wanted[group])
        out[group] = {"label": group, "properties": properties}
    return out


def property_summaries(partial="", folder=None, access=Access.ANONYMOUS_FULL):
    """``[{id, label, description}]`` for properties whose id contains ``partial`` (case-insensitive), over the
    sessions ``access`` reaches."""
    needle = (partial or "").lower()
    scope, scope_params = _scope_sql(folder, access)
    if is_postgres():
        details = f"SELECT DISTINCT jsonb_object_keys(s.details) FROM {TABLE} s{scope}"
        ext = f"SELECT DISTINCT g.key, jsonb_object_keys(g.value) FROM {TABLE} s, jsonb_each(s.ext_details) g{scope}"
    else:
        details = f"SELECT DISTINCT d.key FROM {TABLE} s, json_each(s.details) d{scope}"
        ext = f"SELECT DISTINCT g.key, k.key FROM {TABLE} s, json_each(s.ext_details) g, json_each(g.value) k{scope}"
    found = [(name, LABELS.get(name, name), "") for name in CORE if "." not in name]
    found += [(f"details.{k}", k, "") for (k,) in _fetch(details, scope_params)]
    found += [(f"extDetails.{g}.{k}", k, f"{g} (extended details)") for g, k in _fetch(ext, scope_params)]
    return [
        {"id": pid, "label": label, **({"description": desc} if desc else {})}
        for pid, label, desc in sorted(set(found))
        if needle in pid.lower()
    ]
