"""The REST JSON of sessions (spec §3): camelCase, with null and empty properties omitted."""

from rta_core.timeutil import format_ns
from sessions_app.services.values import STATE_NAMES


def offset_minutes(timestamp_text):
    """The zone offset of canonical timestamp text (always ending in +HH:MM or -HH:MM)."""
    tail = timestamp_text[-6:]
    if len(tail) == 6 and tail[0] in "+-" and tail[3] == ":":
        minutes = int(tail[1:3]) * 60 + int(tail[4:6])
        return -minutes if tail[0] == "-" else minutes
    return 0


def ext_details_for(session, props):
    """The extDetails selected by ``prop`` values: ``extDetails``, ``extDetails.G`` or ``extDetails.G.K``."""
    if not props or not session.ext_details:
        return {}
    out = {}
    for prop in props:
        if prop == "extDetails":
            return dict(session.ext_details)
        if not isinstance(prop, str) or not prop.startswith("extDetails."):
            continue
        group, _, key = prop[len("extDetails.") :].partition(".")
        values = session.ext_details.get(group)
        if not isinstance(values, dict):
            continue
        if not key:
            out[group] = dict(values)
        elif key in values:
            out.setdefault(group, {})[key] = values[key]
    return out


def marker_json(marker):
    out = {"id": marker.marker_id}
    for name, value in (
        ("category", marker.category),
        ("type", marker.type),
        ("label", marker.label),
        ("description", marker.description),
        ("startTime", marker.start_time),
        ("endTime", marker.end_time),
        ("details", marker.details),
    ):
        if value not in (None, "", {}):
            out[name] = value
    return out


def session_json(session, props=(), relations=None):
    """The session as REST serves it; ``relations`` holds resolved children/alternates."""
    out = {
        "identity": session.identity,
        "state": STATE_NAMES.get(session.state, "unknown"),
        "timestamp": session.timestamp_text,
        "identifier": session.identifier,
    }
    if session.start_time is not None and session.end_time is not None:
        offset = offset_minutes(session.timestamp_text)
        out["startTimestamp"] = format_ns(session.start_time, offset)
        out["endTimestamp"] = format_ns(session.end_time, offset)
        out["timeRange"] = {"startTime": session.start_time, "endTime": session.end_time}
    if session.details:
        out["details"] = dict(session.details)
    ext = ext_details_for(session, props)
    if ext:
        out["extDetails"] = ext
    for name in ("type", "quality", "group", "version"):
        value = getattr(session, name)
        if value is not None and value != "":
            out[name] = value
    if relations:
        for name in ("children", "alternates"):
            if relations.get(name):
                out[name] = list(relations[name])
    bindings = list(session.config_bindings.all())
    if bindings:
        out["configBindings"] = [{"identifier": b.identifier, "channelOffset": b.channel_offset} for b in bindings]
    markers = list(session.markers.all())
    if markers:
        out["markers"] = [marker_json(m) for m in markers]
    return out


def sessions_json(sessions, props=()):
    """JSON for a page of sessions, resolving relationships in one pass."""
    from sessions_app.services.listing import related_sessions

    relations = related_sessions([s.identity for s in sessions])
    return [session_json(s, props, relations.get(s.identity)) for s in sessions]


def data_binding_json(binding):
    out = {
        "key": {"source": binding.source, "identity": binding.identity, "timeRef": binding.time_ref},
        "sessionTimeOffset": binding.session_time_offset,
        "dataChannelBindings": [
            {
                "firstDataChannel": c["first_data_channel"],
                "firstSessionChannel": c["first_session_channel"],
                "lastSessionChannel": c["last_session_channel"],
            }
            for c in binding.channel_bindings
        ],
    }
    if binding.session_start_time is not None:
        out["sessionStartTime"] = binding.session_start_time
    if binding.session_end_time is not None:
        out["sessionEndTime"] = binding.session_end_time
    return out
