"""The Schema Mapping Service (spec §14): store, look up, query and delete schema mappings.

A schema mapping tells a data adapter how a store's schema (tables, fields,
measurements, files) maps onto RTA channels and events, for one
``(data_source, data_identity)`` pair: the same pair a session's data binding
names. Every rule lives here; gRPC and the admin only translate.

A mapping is passed in and out as plain data in the shape of the proto message::

    {"properties": {str: str},
     "field_mappings": [{"source_field": str, "target_channel": int, "properties": {str: str},
                         "source_field_data_type": str, "target_channel_data_type": "FLOAT32"}],
     "event_mappings": [{"source_event": str, "target_event_app": str, "target_event_id": int,
                         "properties": {str: str}, "source_event_data_fields": [str]}]}

Missing keys take the proto defaults; ``target_channel_data_type`` may be given
as the enum number or name (``"FLOAT32"``, ``"TARGET_CHANNEL_DATA_TYPE_FLOAT32"``,
any case) and is stored and returned as the short upper-case name.

Rules:

- ``data_source``: non-empty, at most 256 characters; ``data_identity``: at most
  1024 characters (it may be empty: one mapping for a whole source). Neither,
  nor any text inside a mapping, may hold NUL (PostgreSQL text cannot) or
  unpaired surrogates.
- ``target_channel`` is a uint32, unique within a mapping; ``source_field`` and
  ``source_event`` are non-empty; ``target_event_id`` is an int32; data types
  are values of ``TargetChannelDataType``.
- Put creates or replaces the whole mapping. Delete is a no-op when absent.
  Get and Query raise ``NotFound`` when absent.
- Query keeps the top-level properties, the field mappings whose
  ``target_channel`` is in ``select_channels`` (a hexadecimal channel
  expression, §8; the empty string selects no channel, so a client asking
  only for events sends none), and the event mappings only when
  ``select_events`` is true.
"""

import hashlib

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from config_app.models import SchemaMapping
from rta_core.channels import parse_channels
from rta_core.errors import InvalidArgument, NotFound, excerpt
from sessions_app.models import DataBinding, Session

MAX_SOURCE_LENGTH = 256
MAX_IDENTITY_LENGTH = 1024
MAX_UINT32 = 0xFFFFFFFF
INT32_RANGE = (-(2**31), 2**31 - 1)
TYPE_PREFIX = "TARGET_CHANNEL_DATA_TYPE_"

# TargetChannelDataType (9 is reserved).
DATA_TYPES = {
    "UNSPECIFIED": 0,
    "UINT8": 2,
    "INT8": 3,
    "UINT16": 4,
    "INT16": 5,
    "UINT32": 6,
    "INT32": 7,
    "FLOAT32": 8,
    "DOUBLE64": 10,
}
DATA_TYPE_NAMES = {number: name for name, number in DATA_TYPES.items()}

FIELD_MAPPING_DEFAULTS = {
    "source_field": "",
    "target_channel": 0,
    "properties": {},
    "source_field_data_type": "",
    "target_channel_data_type": "UNSPECIFIED",
}
EVENT_MAPPING_DEFAULTS = {
    "source_event": "",
    "target_event_app": "",
    "target_event_id": 0,
    "properties": {},
    "source_event_data_fields": [],
}
MAPPING_DEFAULTS = {"properties": {}, "field_mappings": [], "event_mappings": []}


# --- arguments -------------------------------------------------------------------------------


def _text(value, field, *, empty=True, limit=None):
    """``value`` if it is storable text (no NUL, valid Unicode, within ``limit``), else InvalidArgument."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string, not {type(value).__name__}", field=field)
    if not empty and value == "":
        raise InvalidArgument(f"{field} must not be empty", field=field)
    if limit is not None and len(value) > limit:
        raise InvalidArgument(f"{field} is {len(value)} characters long; the limit is {limit}", field=field)
    if "\x00" in value:
        raise InvalidArgument(f"{field} must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field} is not valid Unicode text", field=field) from None
    return value


def _integer(value, field, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} must be an integer, not {excerpt(value)}", field=field)
    if not low <= value <= high:
        raise InvalidArgument(f"{field} {value} is outside {low}..{high}", field=field)
    return value


def checked_key(data_source, data_identity):
    """``(data_source, data_identity)`` when they name a mapping, else InvalidArgument."""
    _text(data_source, "data_source", empty=False, limit=MAX_SOURCE_LENGTH)
    _text(data_identity, "data_identity", limit=MAX_IDENTITY_LENGTH)
    return data_source, data_identity


def key_hash(data_source, data_identity):
    """SHA-256 (hex) of a valid key: what makes the pair unique in the database."""
    checked_key(data_source, data_identity)
    encoded = f"{data_source}\x00{data_identity}".encode()  # the source holds no NUL: unambiguous
    return hashlib.sha256(encoded).hexdigest()


def data_type_name(value, field="target_channel_data_type"):
    """The short name (``"FLOAT32"``) of a ``TargetChannelDataType`` given by number or name."""
    if isinstance(value, str):
        name = value.strip().upper()
        name = name.removeprefix(TYPE_PREFIX)
        if name in DATA_TYPES:
            return name
    elif isinstance(value, int) and not isinstance(value, bool) and value in DATA_TYPE_NAMES:
        return DATA_TYPE_NAMES[value]
    known = ", ".join(DATA_TYPES)
    raise InvalidArgument(f"{field} {excerpt(value)} is not a known data type ({known})", field=field)


def _properties(value, field):
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be an object of strings", field=field)
    return {_text(k, f"{field} key"): _text(v, f"{field}[{k!r}]") for k, v in value.items()}


def _object(value, field, defaults):
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be an object", field=field)
    unknown = sorted(set(value) - set(defaults), key=str)
    if unknown:
        raise InvalidArgument(
            f"{field} has unknown key {excerpt(unknown[0])} (known: {', '.join(defaults)})", field=field
        )
    return {**defaults, **value}


def _field_mapping(value, field):
    item = _object(value, field, FIELD_MAPPING_DEFAULTS)
    return {
        "source_field": _text(item["source_field"], f"{field}.source_field", empty=False),
        "target_channel": _integer(item["target_channel"], f"{field}.target_channel", 0, MAX_UINT32),
        "properties": _properties(item["properties"], f"{field}.properties"),
        "source_field_data_type": _text(item["source_field_data_type"], f"{field}.source_field_data_type"),
        "target_channel_data_type": data_type_name(
            item["target_channel_data_type"], f"{field}.target_channel_data_type"
        ),
    }


def _event_mapping(value, field):
    item = _object(value, field, EVENT_MAPPING_DEFAULTS)
    data_fields = item["source_event_data_fields"]
    if not isinstance(data_fields, list):
        raise InvalidArgument(f"{field}.source_event_data_fields must be a list of strings", field=field)
    return {
        "source_event": _text(item["source_event"], f"{field}.source_event", empty=False),
        "target_event_app": _text(item["target_event_app"], f"{field}.target_event_app"),
        "target_event_id": _integer(item["target_event_id"], f"{field}.target_event_id", *INT32_RANGE),
        "properties": _properties(item["properties"], f"{field}.properties"),
        "source_event_data_fields": [
            _text(name, f"{field}.source_event_data_fields[{i}]") for i, name in enumerate(data_fields)
        ],
    }


def _list(value, field):
    if not isinstance(value, list):
        raise InvalidArgument(f"{field} must be a list", field=field)
    return value


def checked_mapping(mapping):
    """The canonical form of ``mapping`` (every key present, data types by name), else InvalidArgument.

    ``field`` of the error names the offending part, e.g. ``schema_mapping.field_mappings[3].target_channel``.
    """
    mapping = _object({} if mapping is None else mapping, "schema_mapping", MAPPING_DEFAULTS)
    fields = _list(mapping["field_mappings"], "schema_mapping.field_mappings")
    events = _list(mapping["event_mappings"], "schema_mapping.event_mappings")
    result = {
        "properties": _properties(mapping["properties"], "schema_mapping.properties"),
        "field_mappings": [_field_mapping(f, f"schema_mapping.field_mappings[{i}]") for i, f in enumerate(fields)],
        "event_mappings": [_event_mapping(e, f"schema_mapping.event_mappings[{i}]") for i, e in enumerate(events)],
    }
    seen = {}
    for index, item in enumerate(result["field_mappings"]):
        channel = item["target_channel"]
        if channel in seen:
            field = f"schema_mapping.field_mappings[{index}].target_channel"
            raise InvalidArgument(
                f"{field}: channel {channel:X} (hex) is already the target of field_mappings[{seen[channel]}]",
                field=field,
            )
        seen[channel] = index
    return result


# --- the store -------------------------------------------------------------------------------


def _find(data_source, data_identity):
    return SchemaMapping.objects.filter(key_hash=key_hash(data_source, data_identity)).first()


def _stored(data_source, data_identity):
    row = _find(data_source, data_identity)
    if row is None:
        raise NotFound(
            f"no schema mapping for source {excerpt(data_source)} and identity {excerpt(data_identity)}",
            field="data_identity",
        )
    return row


def has_schema_mapping(data_source, data_identity):
    """Whether a mapping is stored for the pair."""
    return SchemaMapping.objects.filter(key_hash=key_hash(data_source, data_identity)).exists()


def get_schema_mapping(data_source, data_identity):
    """The whole mapping (canonical form); NotFound when absent."""
    return _stored(data_source, data_identity).mapping


def query_schema_mapping(data_source, data_identity, select_channels="", select_events=False):
    """The mapping's properties, its field mappings whose target channel is in ``select_channels``
    (a channel expression; ``""`` selects none) and, when ``select_events``, its event mappings.
    """
    checked_key(data_source, data_identity)
    if not isinstance(select_channels, str):
        raise InvalidArgument("select_channels must be a channel expression", field="select_channels")
    try:
        channels = parse_channels(select_channels) if select_channels != "" else None
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, field="select_channels") from None
    mapping = _stored(data_source, data_identity).mapping
    return {
        "properties": mapping["properties"],
        "field_mappings": [
            f for f in mapping["field_mappings"] if channels is not None and f["target_channel"] in channels
        ],
        "event_mappings": mapping["event_mappings"] if select_events else [],
    }


def put_schema_mapping(data_source, data_identity, mapping):
    """Create or replace the pair's mapping; returns ``(row, created)``."""
    key = key_hash(data_source, data_identity)
    canonical = checked_mapping(mapping)
    # update_or_create locks the row, and retries a creation that lost a race as an update.
    return SchemaMapping.objects.update_or_create(
        key_hash=key,
        defaults={
            "data_source": data_source,
            "data_identity": data_identity,
            "mapping": canonical,
            "field_count": len(canonical["field_mappings"]),
            "event_count": len(canonical["event_mappings"]),
        },
    )


def delete_schema_mapping(data_source, data_identity):
    """Delete the pair's mapping if present; True if one was deleted."""
    deleted, _ = SchemaMapping.objects.filter(key_hash=key_hash(data_source, data_identity)).delete()
    return bool(deleted)


def delete_schema_mappings(rows):
    """Delete each of ``rows`` (mappings or a queryset); the number deleted."""
    return sum(delete_schema_mapping(row.data_source, row.data_identity) for row in list(rows))


# --- the sessions that use a mapping ---------------------------------------------------------


def bound_sessions(data_source, data_identity):
    """Sessions with a data binding of the pair, most recent first."""
    return (
        Session.objects.filter(data_bindings__source=data_source, data_bindings__identity=data_identity)
        .distinct()
        .order_by("-timestamp_ns", "identity")
    )


def with_session_counts(rows):
    """Annotate a SchemaMapping queryset with ``session_count``: sessions whose bindings use each mapping."""
    counts = (
        DataBinding.objects.filter(source=OuterRef("data_source"), identity=OuterRef("data_identity"))
        .order_by()
        .values("source")
        .annotate(n=Count("session", distinct=True))
        .values("n")
    )
    return rows.annotate(session_count=Coalesce(Subquery(counts, output_field=IntegerField()), Value(0)))


def mappings_with_sessions(rows=None):
    """``[(mapping row, [session, ...]), ...]``: each mapping with the sessions whose bindings use it."""
    rows = list(SchemaMapping.objects.all() if rows is None else rows)
    keys = {(row.data_source, row.data_identity) for row in rows}
    sessions = {key: [] for key in keys}
    bindings = (
        DataBinding.objects.filter(source__in={s for s, _ in keys}, identity__in={i for _, i in keys})
        .select_related("session")
        .order_by("-session__timestamp_ns", "session__identity")
    )
    for binding in bindings:
        listed = sessions.get((binding.source, binding.identity))
        if listed is not None and binding.session not in listed:
            listed.append(binding.session)
    return [(row, sessions[(row.data_source, row.data_identity)]) for row in rows]
