"""A configuration JSON document as people read it: applications, their parameter
tree and tables of parameters, channels, conversions, error and event definitions.

Used by the config admin's detail page; the lenient readers below are also how
data_app's session admin names channels (``data_app.admin.summary``). They read
documents leniently (missing or mistyped fields show as blanks, defaults come
from the configuration schema) so that any stored document renders; tables
longer than ``max_rows`` are cut.
"""

MAX_ROWS = 2000


# --- lenient readers -------------------------------------------------------------------------


def applications(document):
    """``[(name, application)]``: the document's members that are objects (a non-object document has none)."""
    if not isinstance(document, dict):
        return []
    return [(name, app) for name, app in document.items() if isinstance(app, dict)]


def items(app, key):
    """The objects listed under ``app[key]`` (other entries, or a value that is not a list, give nothing)."""
    value = app.get(key) if isinstance(app, dict) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text(value):
    """``value`` when it is a string, else blank."""
    return value if isinstance(value, str) else ""


def integer(value):
    """``value`` as an int when it is one (or a float holding one), else None; booleans are not numbers here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def conversions_by_name(document):
    """``{name: conversion}`` of every application's conversions (parameters may name another application's);
    the first of a name wins."""
    conversions = {}
    for _, app in applications(document):
        for conversion in items(app, "conversions"):
            if isinstance(conversion.get("name"), str):
                conversions.setdefault(conversion["name"], conversion)
    return conversions


def conversion_of(parameter, conversions):
    """The conversion ``parameter`` names (``conv``), or ``{}`` (none, or none of that name)."""
    name = parameter.get("conv")
    return conversions.get(name, {}) if isinstance(name, str) else {}


def parameter_unit(parameter, conversion):
    """A parameter's unit: its own when it gives one, else its conversion's."""
    if isinstance(parameter.get("unit"), str):
        return parameter["unit"]
    return text(conversion.get("unit"))


# --- the outline -----------------------------------------------------------------------------


def outline(document, max_rows=MAX_ROWS):
    """``[application, ...]``, each a dict of display-ready values (see the template)."""
    conversions = conversions_by_name(document)
    return [_application(name, app, conversions, max_rows) for name, app in applications(document)]


def _table(rows, max_rows):
    return {"rows": rows[:max_rows], "total": len(rows), "hidden": max(0, len(rows) - max_rows)}


def _application(name, app, conversions, max_rows):
    identity = app.get("identity") if isinstance(app.get("identity"), dict) else {}
    rda = app.get("rda") if isinstance(app.get("rda"), dict) else {}
    tree = app.get("tree") if isinstance(app.get("tree"), dict) else {}
    return {
        "name": name,
        "desc": app.get("desc") if isinstance(app.get("desc"), str) else name,
        "comms_path": identity.get("commsPath", ""),
        "version_id": identity.get("applicationVersionId", ""),
        "rda_owner": rda.get("ownerId", ""),
        "rda_support": rda.get("support", ""),
        "tree": {
            "groups": [_group(g) for g in tree.get("groups", []) if isinstance(g, dict)]
            if isinstance(tree.get("groups"), list)
            else [],
            "params": _strings(tree.get("params")),
        },
        "parameters": _table([_parameter(p, conversions) for p in items(app, "parameters")], max_rows),
        "channels": _table([_channel(c) for c in items(app, "channels")], max_rows),
        "conversions": _table([_conversion(c) for c in items(app, "conversions")], max_rows),
        "errors": _table([_error(e) for e in items(app, "errors")], max_rows),
        "events": _table([_event(e) for e in items(app, "events")], max_rows),
    }


def _strings(value):
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _group(group, depth=0):
    children = group.get("groups") if depth < 50 else None
    return {
        "id": group.get("id", ""),
        "desc": group.get("desc", ""),
        "params": _strings(group.get("params")),
        "groups": [_group(g, depth + 1) for g in children if isinstance(g, dict)] if isinstance(children, list) else [],
    }


def _parameter(parameter, conversions):
    conversion = conversion_of(parameter, conversions)
    return {
        "id": parameter.get("id", ""),
        "name": parameter.get("name", ""),
        "desc": parameter.get("desc", ""),
        "type": parameter.get("type", "std"),
        "unit": parameter_unit(parameter, conversion),
        "format": parameter.get("format", conversion.get("format", "")),
        "min": parameter.get("min", 0.0),
        "max": parameter.get("max", 0.0),
        "warn_min": parameter.get("warnMin", parameter.get("min", 0.0)),
        "warn_max": parameter.get("warnMax", parameter.get("max", 0.0)),
        "conv": parameter.get("conv", ""),
        "channels": ", ".join(str(c) for c in parameter.get("channels", []) or [])
        if isinstance(parameter.get("channels"), list)
        else "",
        "func": (parameter.get("func") or {}).get("code", "") if isinstance(parameter.get("func"), dict) else "",
    }


def interval_text(interval):
    """A channel interval (ns) as period and rate: ``10 ms (100 Hz)``; blank when not periodic."""
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
        return ""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1)):
        if interval >= scale:
            period = f"{interval / scale:g} {unit}"
            break
    rate = 1e9 / interval
    return f"{period} ({rate:g} Hz)"


def _channel(channel):
    interval = channel.get("interval", 0)
    return {
        "id": channel.get("id", ""),
        "name": channel.get("name", ""),
        "type": channel.get("type", "f64"),
        "source": channel.get("source", "row"),
        "interval": interval,
        "interval_text": interval_text(interval),
    }


def _conversion(conversion):
    kind, summary = "rational", "1:1"
    if isinstance(conversion.get("rational"), dict):
        coeffs = conversion["rational"].get("coeffs", [])
        summary = "coefficients " + ", ".join(f"{c:g}" if isinstance(c, (int, float)) else str(c) for c in coeffs)
    elif isinstance(conversion.get("table"), dict):
        table = conversion["table"]
        kind = "table"
        summary = f"{len(table.get('raw') or [])} entries" + (", interpolated" if table.get("interpolated") else "")
    elif isinstance(conversion.get("text"), dict):
        text = conversion["text"]
        kind = "text"
        pairs = list(zip(text.get("keys") or [], text.get("values") or []))
        summary = ", ".join(f"{k:g}={v}" if isinstance(k, (int, float)) else f"{k}={v}" for k, v in pairs[:8])
        if len(pairs) > 8:
            summary += f", … ({len(pairs)} values)"
    elif isinstance(conversion.get("formula"), dict):
        kind = "formula"
        summary = str(conversion["formula"].get("code", ""))
    return {
        "name": conversion.get("name", ""),
        "unit": conversion.get("unit", ""),
        "format": conversion.get("format", ""),
        "kind": kind,
        "summary": summary,
    }


def _error(error):
    return {
        "name": error.get("name", ""),
        "desc": error.get("desc", ""),
        "group": error.get("group", ""),
        "current": error.get("current", ""),
        "logged": error.get("logged", ""),
        "bit": error.get("bit", 0),
    }


def _event(event):
    convs = event.get("convs")
    return {
        "id": event.get("id", ""),
        "code": event.get("code", ""),
        "desc": event.get("desc", ""),
        "pri": event.get("pri", "debug"),
        "convs": ", ".join(str(c) for c in convs) if isinstance(convs, list) else "",
    }
