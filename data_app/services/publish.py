"""Publishing data that stays where it is: what an indexer writes for each data identity it finds.

For one (source, identity), ``publish`` writes, all through the service layer:

1. the schema mapping: the one stored is kept (someone may have edited it),
   otherwise the generated one (``IndexedData.fields`` in order, channels 0, 1
   ...) is stored; ``replace_mapping`` stores the generated one whatever;
2. a config describing the mapped fields (a parameter and a channel each,
   periodic at its interval or timestamped, its sample type; the events
   seen), under an identifier derived from its content, so identical data
   shares one config and a changed one gets a new config;
3. a session whose identity is derived from (source, identity), so indexing
   again updates the same session: time range from the data, timestamp,
   identifier and details from the data's own metadata where it has some,
   the config bound, and one data binding (source, identity) with no channel
   bindings (every channel passes through 1:1).

Nothing is copied: the gateway reads the data from the source when asked.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass

from config_app.models import JSON_CONTENT_TYPE
from config_app.services import schema_mappings
from config_app.services import store as config_store
from data_app.sources.indexed import IndexedData, IndexedField  # noqa: F401  (what indexers describe)
from rta_core.errors import NotFound
from rta_core.timeutil import format_ns
from sessions_app.models import SessionState
from sessions_app.services.updates import create_or_update_session

NAMESPACE = uuid.UUID("0b8f6f3e-2d6c-4a8e-9a55-6f1d8c3e7a21")  # session identities of indexed data


@dataclass(frozen=True)
class Published:
    session: str
    config: str
    mapping_stored: bool  # False: a stored mapping was kept


TYPE_NAMES = {"u8": "UINT8", "s8": "INT8", "u16": "UINT16", "s16": "INT16", "u32": "UINT32", "s32": "INT32"}
TYPE_NAMES.update({"f32": "FLOAT32", "f64": "DOUBLE64"})


def session_identity(source, identity):
    """The session of a data identity: the same one every time it is indexed."""
    return str(uuid.uuid5(NAMESPACE, f"{source}\0{identity}"))


def generated_mapping(data):
    """The schema mapping of ``data``'s fields in order: field i on channel i."""
    return {
        "properties": dict(data.properties),
        "field_mappings": [
            {
                "source_field": f.name,
                "target_channel": i,
                "properties": {**f.properties, **({"interval": str(f.interval)} if f.interval else {})},
                "source_field_data_type": f.source_type,
                "target_channel_data_type": TYPE_NAMES.get(f.data_type, "DOUBLE64"),
            }
            for i, f in enumerate(data.fields)
        ],
        "event_mappings": [],
    }


def config_document(source, data, mapping):
    """A config of the mapped fields: one parameter and one channel each, and the events seen."""
    by_name = {f.name: f for f in data.fields}
    mapped = [(m, by_name[m["source_field"]]) for m in mapping["field_mappings"] if m["source_field"] in by_name]
    types = {v: k for k, v in TYPE_NAMES.items()}
    return {
        source: {
            "desc": f"data served in place by the {source} data source",
            "parameters": [
                {
                    "id": f"{f.name}:{source}",
                    "name": f.name,
                    "desc": f.name,
                    "conv": "identity",
                    "channels": [m["target_channel"]],
                }
                for m, f in mapped
            ],
            "channels": [
                {
                    "id": m["target_channel"],
                    "name": f.name,
                    "type": types.get(m["target_channel_data_type"], "f64"),
                    "source": "periodic" if _interval(m, f) else "timestamped",
                    "interval": _interval(m, f) or 0,
                }
                for m, f in mapped
            ],
            "conversions": [
                {"name": "identity", "unit": "", "format": "%g", "rational": {"coeffs": [0, 1, 0, 0, 0, 1]}}
            ],
            "events": [
                {"id": number, "code": str(name), "desc": str(name), "pri": "low"} for number, name in data.events
            ],
        }
    }


def _interval(mapping_field, indexed):
    try:
        return int(mapping_field["properties"].get("interval", "")) or None
    except ValueError:
        return indexed.interval


def publish(source, identity, data, replace_mapping=False):
    """Publish ``data`` (an ``IndexedData``) found at ``identity`` of ``source``; a ``Published``."""
    try:
        mapping = None if replace_mapping else schema_mappings.get_schema_mapping(source, identity)
    except NotFound:
        mapping = None
    mapping_stored = mapping is None
    if mapping_stored:
        mapping = generated_mapping(data)
        schema_mappings.put_schema_mapping(source, identity, mapping)
        mapping = schema_mappings.get_schema_mapping(source, identity)
    document = json.dumps(config_document(source, data, mapping), sort_keys=True).encode()
    config = str(uuid.uuid5(NAMESPACE, hashlib.sha256(document).hexdigest())).upper()
    config_store.put_config(config, JSON_CONTENT_TYPE, document)
    session = session_identity(source, identity)
    timestamp = data.start if data.timestamp is None else data.timestamp
    created = {
        "timestamp": format_ns(timestamp),
        "identifier": data.identifier or identity.rstrip("/").rsplit("/", 1)[-1][:200],
        "state": SessionState.CLOSED,
    }
    details = {"Source": source, **{str(k): v for k, v in data.details.items()}}
    create_or_update_session(
        session,
        [
            ("set_time_range", (data.start, data.end)),
            ("set_details", {"details": details}),
            ("set_config_bindings", [{"identifier": config, "channel_offset": 0}]),
            ("set_data_bindings", [{"source": source, "identity": identity}]),
        ],
        create=created,
    )
    return Published(session, config, mapping_stored)
