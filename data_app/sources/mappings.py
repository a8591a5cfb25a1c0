"""The schema mapping a source serves an identity by (spec §14), as plain field and event descriptions.

With no stored mapping, a source's fields are served in the store's order as
channels 0, 1, 2 ... as f64 (what the toolkit's example adapter does without a
mapping); with one, only mapped fields are served, each on its target channel
and type. Mapping-level ``properties`` (``table``, ``time_column``,
``measurement`` ...) are the adapter's to read.
"""

from dataclasses import dataclass, field

from config_app.services import schema_mappings
from rta_core.errors import NotFound
from rta_kit.datatypes import type_name


@dataclass(frozen=True)
class FieldMap:
    """One served field: store field ``name`` on ``channel`` as ``data_type`` (``f64`` ...)."""

    name: str
    channel: int
    data_type: str = "f64"
    properties: dict = field(default_factory=dict)

    @property
    def interval(self):
        """The ``interval`` property (ns), or None: a declared regular rate wins over detection."""
        value = self.properties.get("interval", "")
        try:
            interval = int(value)
        except ValueError:
            return None
        return interval if interval > 0 else None


@dataclass(frozen=True)
class Mapping:
    properties: dict
    fields: tuple  # FieldMap, in mapping order
    events: tuple  # the stored event mapping dicts
    stored: bool  # False: no mapping stored, the defaults apply

    def property(self, name, default=""):
        return self.properties.get(name) or default


def load(source, identity):
    """The ``Mapping`` of ``(source, identity)``: the stored one, or an empty unstored one."""
    try:
        stored = schema_mappings.get_schema_mapping(source, identity)
    except NotFound:
        return Mapping({}, (), (), False)
    fields = tuple(
        FieldMap(
            f["source_field"],
            f["target_channel"],
            _sample_type(f["target_channel_data_type"]),
            dict(f["properties"]),
        )
        for f in stored["field_mappings"]
    )
    return Mapping(dict(stored["properties"]), fields, tuple(stored["event_mappings"]), True)


def _sample_type(name):
    return "f64" if name in ("", "UNSPECIFIED") else type_name(name)


def served_fields(mapping, store_fields):
    """``FieldMap``s of the ``store_fields`` (names, store order) the mapping serves."""
    if not mapping.stored:
        return [FieldMap(name, i) for i, name in enumerate(store_fields)]
    present = set(store_fields)
    return [f for f in mapping.fields if f.name in present]
