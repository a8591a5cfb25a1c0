"""Protobuf ⇄ domain translation for the SessionStore service.

Requests become the plain values the service layer takes (``(op, argument)``
pairs for ``create_or_update_session``); models become ``Session`` messages.
No rule is checked here beyond what the wire format itself implies (wrapper
presence, JSON text): validation belongs to ``sessions_app.services``.
"""

import json
from datetime import UTC

from django.core.serializers.json import DjangoJSONEncoder
from rta.toolkit.api import session_service_pb2 as pb

from rta_core.errors import InvalidArgument
from sessions_app.models import RefKind
from sessions_app.services import rendering
from sessions_app.services.values import parse_json_object

# --- requests -> domain ----------------------------------------------------------------------


def _wrapped(message, field):
    """The value of a google.protobuf wrapper field, or None when unset."""
    return getattr(message, field).value if message.HasField(field) else None


def create_args(request):
    """``create_if_not_exists`` as the service's ``create`` dict (None when the field is unset).

    Proto3 zero values (state 0, empty strings) read as "not given": the service then
    applies its defaults (closed, now, the identity).
    """
    if not request.HasField("create_if_not_exists"):
        return None
    c = request.create_if_not_exists
    return {"state": c.state, "timestamp": c.timestamp, "identifier": c.identifier}


def _none(_):
    return None


def _scalar(value):
    return value


def _time_range(value):
    return (value.start_time, value.end_time)


def _details(value):
    return {"category": value.category, "details": dict(value.details)}


def _details_json(value):
    return {"category": value.category, "json": value.json}


def _detail_keys(value):
    return {"category": value.category, "keys": list(value.keys)}


def marker(category, m):
    """One marker of a MarkersMap as the service's marker dict."""
    return {
        "id": m.id,
        "category": category,
        "type": m.type,
        "label": m.label,
        "description": _wrapped(m, "description"),
        "start_time": _wrapped(m, "start_time"),
        "end_time": _wrapped(m, "end_time"),
        "details": parse_json_object(m.details_json, f"marker {m.id!r} details_json"),
    }


def _markers(value):
    # Categories in a stable order, so duplicate-id errors are reported deterministically.
    return [
        marker(category, m) for category, markers in sorted(value.markers_by_category.items()) for m in markers.markers
    ]


def _marker_ids(value):
    return list(value.marker_ids)


def _config_bindings(value):
    return [{"identifier": b.identifier, "channel_offset": b.channel_offset} for b in value.config_bindings]


def _config_identifiers(value):
    return list(value.identifiers)


def _binding_key(key):
    return {"source": key.source, "identity": key.identity, "time_ref": key.time_ref}


def data_binding(b):
    return {
        **_binding_key(b.key),
        "session_start_time": _wrapped(b, "session_start_time"),
        "session_end_time": _wrapped(b, "session_end_time"),
        "session_time_offset": b.session_time_offset,
        "channel_bindings": [
            {
                "first_data_channel": c.first_data_channel,
                "first_session_channel": c.first_session_channel,
                "last_session_channel": c.last_session_channel,
            }
            for c in b.data_channel_bindings
        ],
    }


def _data_bindings(value):
    return [data_binding(b) for b in value.data_bindings]


def _data_binding_keys(value):
    return [_binding_key(k) for k in value.keys]


def _folders(value):
    return list(value.identities)


def _ref_uris(value):
    return list(value.ref_uris)


# How each SessionUpdate oneof field becomes the argument of the service op of the same name.
_COLLECTIONS = {
    "markers": (_markers, _markers, _marker_ids),
    "config_bindings": (_config_bindings, _config_bindings, _config_identifiers),
    "data_bindings": (_data_bindings, _data_bindings, _data_binding_keys),
    "folders": (_folders, _folders, _folders),
    "ref_anchors": (_ref_uris, _ref_uris, _ref_uris),
    "alternate_of_refs": (_ref_uris, _ref_uris, _ref_uris),
    "child_of_refs": (_ref_uris, _ref_uris, _ref_uris),
}
ARGUMENTS = {
    "update_heartbeat": _none,
    "set_state": _scalar,
    "set_timestamp": _scalar,
    "set_time_range": _time_range,
    "extend_time_range": _time_range,
    "clear_time_range": _none,
    "set_identifier": _scalar,
    "set_details": _details,
    "update_details": _details,
    "set_details_json": _details_json,
    "update_details_json": _details_json,
    "delete_details": _detail_keys,
    "set_type": lambda v: v.value,
    "clear_type": _none,
    "set_quality": _scalar,
    "clear_quality": _none,
    "set_group": _scalar,
    "clear_group": _none,
    "set_version": _scalar,
    "clear_version": _none,
}
for _name, (_set, _update, _delete) in _COLLECTIONS.items():
    ARGUMENTS[f"set_{_name}"], ARGUMENTS[f"update_{_name}"], ARGUMENTS[f"delete_{_name}"] = _set, _update, _delete


def update_ops(updates):
    """``[(op, argument)]`` for repeated SessionUpdate messages, in order.

    An update without an op, or whose values are not even well-formed (marker
    details JSON), raises ``InvalidArgument`` named like the service's own errors.
    """
    ops = []
    for index, update in enumerate(updates):
        op = update.WhichOneof("op")
        if op is None:
            raise InvalidArgument(f"updates[{index}] carries no operation")
        if op not in ARGUMENTS:
            raise InvalidArgument(f"updates[{index}] {op}: operation not supported by this server")
        try:
            ops.append((op, ARGUMENTS[op](getattr(update, op))))
        except InvalidArgument as exc:
            raise InvalidArgument(f"updates[{index}] {op}: {exc.message}") from None
    return ops


# --- domain -> responses ---------------------------------------------------------------------


def to_json(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), cls=DjangoJSONEncoder)


def heartbeat_utc(session):
    """The heartbeat as ISO 8601 in UTC (``+00:00``)."""
    return session.heartbeat.astimezone(UTC).isoformat()


def data_binding_message(binding):
    out = pb.DataBinding(
        key=pb.DataBindingKey(source=binding.source, identity=binding.identity, time_ref=binding.time_ref),
        session_time_offset=binding.session_time_offset,
        data_channel_bindings=[
            pb.DataChannelBinding(
                first_data_channel=c["first_data_channel"],
                first_session_channel=c["first_session_channel"],
                last_session_channel=c["last_session_channel"],
            )
            for c in binding.channel_bindings
        ],
    )
    if binding.session_start_time is not None:
        out.session_start_time.value = binding.session_start_time
    if binding.session_end_time is not None:
        out.session_end_time.value = binding.session_end_time
    return out


# Which models' related rows each SessionElements flag needs (loaded with prefetch_related_objects).
PREFETCH = {"data_bindings": "data_bindings", "folders": "folder_links", "refs": "refs"}


def prefetches(elements):
    return [related for flag, related in PREFETCH.items() if getattr(elements, flag)]


def session_message(session, elements, relations=None):
    """A Session message holding the parts ``elements`` asks for.

    ``relations`` is the session's entry of ``listing.related_sessions`` (used for json);
    the related rows of ``prefetches(elements)`` should already be loaded.
    """
    out = pb.Session(identity=session.identity)
    if elements.json:
        out.json = to_json(rendering.session_json(session, list(elements.json_properties), relations))
    if elements.heartbeat_utc:
        out.heartbeat_utc = heartbeat_utc(session)
    if elements.data_bindings:
        out.data_bindings.extend(data_binding_message(b) for b in session.data_bindings.all())
    if elements.folders:
        out.folders.extend(sorted(link.folder_id for link in session.folder_links.all()))
    if elements.refs:
        by_kind = {
            RefKind.ANCHOR: out.ref_anchors,
            RefKind.CHILD_OF: out.child_of_refs,
            RefKind.ALTERNATE_OF: out.alternate_of_refs,
        }
        for ref in session.refs.all():
            by_kind[ref.kind].append(ref.uri)
    return out


def folder_message(folder):
    return pb.SessionFolder(
        identity=folder.identity,
        label=folder.label,
        description=folder.description,
        has_children=bool(getattr(folder, "has_children", False)),
    )


def property_summary_message(summary):
    return pb.PropertySummary(
        id=summary["id"], label=summary.get("label", ""), description=summary.get("description", "")
    )
