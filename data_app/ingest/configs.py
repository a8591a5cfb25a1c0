"""RTA JSON configs generated from a data format and its ATLAS configuration(s).

One config per (data format, ATLAS configurations) pair, published once under
``advanced-streams/v1/<dataFormat id>/<atlasConfiguration ids joined by +>``
(configs are immutable, so a pair is generated and published once whoever
asks; the ``v1`` changes if the mapping ever does). Sessions bind it with a
channel offset when they use several data formats.

The mapping:

- Each data-format (feed, parameter, aggregate) is an RTA parameter with one
  ``timestamped`` ``f64`` channel (``formats.layout`` numbers them), whose
  ``interval`` is the feed's nominal interval (1 s / frequency; 0 without one).
  The primary aggregate keeps the parameter identifier; the others are named
  ``name_<aggregate>:app`` (``vCar_max:Chassis``), and a parameter repeated in
  a second feed gets the feed name the same way.
- Display names, descriptions, units, format strings, ranges and conversions
  come from the ATLAS configuration (the first one that defines a parameter
  wins); its app groups become RTA applications and its parameter groups the
  tree. A parameter it does not describe goes into the application named by
  its identifier's suffix (``vCar:Chassis`` -> ``Chassis``), else ``Streams``.
- Event definitions come from the ATLAS configuration's ``events``, in the
  application named by the event id's suffix (``IO2-2B02:TAG320BIOS`` ->
  ``TAG320BIOS``), with the numeric id ``event_definition_id(event id)`` that
  the ingest writes events with.
"""

import zlib

import orjson

from config_app.models import JSON_CONTENT_TYPE
from config_app.services import store

PREFIX = "advanced-streams/v1"
DEFAULT_APP = "Streams"
IDENTITY_COEFFICIENTS = [0, 1, 0, 0, 1, 0]
_PRIORITIES = ("debug", "low", "medium", "high")


def config_identifier(format_id, atlas_ids):
    return f"{PREFIX}/{format_id}/{'+'.join(atlas_ids)}"


def app_of(identifier):
    """The application an identifier names by MAT convention (``name:app``), else ``DEFAULT_APP``."""
    _, colon, app = identifier.rpartition(":")
    return app if colon and app else DEFAULT_APP


def event_definition_id(event_id):
    """The stable numeric id of an Advanced Streams event id (CRC-32, as a positive int32)."""
    return zlib.crc32(event_id.encode("utf-8")) & 0x7FFFFFFF


def _suffixed(identifier, suffix):
    name, colon, app = identifier.rpartition(":")
    return f"{name}_{suffix}:{app}" if colon and name else f"{identifier}_{suffix}"


def _index_atlas(documents):
    """``(parameters, conversions, events)``: parameter identifier -> (app, group path, properties)."""
    parameters, conversions, events = {}, {}, {}

    def walk(groups, app, path):
        for name, group in groups.items():
            here = path + [name]
            for identifier, properties in group.get("parameters", {}).items():
                parameters.setdefault(identifier, (app, here, properties))
            walk(group.get("groups", {}), app, here)

    for document in documents:
        for app, spec in document.get("appGroups", {}).items():
            walk(spec.get("groups", {}), app, [])
        for name, conversion in document.get("conversions", {}).items():
            conversions.setdefault(name, conversion)
        for event_id, event in document.get("events", {}).items():
            events.setdefault(event_id, event)
    return parameters, conversions, events


class _App:
    def __init__(self, name):
        self.name = name
        self.tree = {"groups": {}, "params": []}
        self.parameters, self.channels, self.conversions, self.events = [], [], [], []
        self.conversion_names = set()

    def place(self, path, parameter_id):
        node = self.tree
        for name in path:
            node = node["groups"].setdefault(name, {"groups": {}, "params": []})
        node["params"].append(parameter_id)

    def _groups(self, groups, path):
        out = []
        for name, node in groups.items():
            here = path + [name]
            group = {"id": "/".join([self.name, *here]), "desc": name}
            if node["groups"]:
                group["groups"] = self._groups(node["groups"], here)
            if node["params"]:
                group["params"] = node["params"]
            out.append(group)
        return out

    def document(self):
        out = {"desc": self.name, "tree": {}}
        if self.tree["groups"]:
            out["tree"]["groups"] = self._groups(self.tree["groups"], [])
        if self.tree["params"]:
            out["tree"]["params"] = self.tree["params"]
        for key in ("parameters", "channels", "conversions", "events"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def generate(format_layout, atlas_documents):
    """The RTA config document for a data format layout and its ATLAS configuration documents."""
    described, conversions, events = _index_atlas(atlas_documents)
    apps, used_ids = {}, set()

    def app_named(name):
        if name not in apps:
            apps[name] = _App(name)
        return apps[name]

    def conversion_for(app, name):
        if name and name in conversions:
            if name not in app.conversion_names:
                app.conversion_names.add(name)
                app.conversions.append({**conversions[name], "name": name})
            return name
        default = f"Identity:{app.name}"
        if default not in app.conversion_names:
            app.conversion_names.add(default)
            app.conversions.append({"name": default, "rational": {"coeffs": IDENTITY_COEFFICIENTS}})
        return default

    for feed in format_layout.feeds.values():
        for parameter in feed.parameters:
            identifier = parameter.identifier
            app_name, path, properties = described.get(identifier, (app_of(identifier), [], {}))
            app = app_named(app_name)
            base = identifier if identifier not in used_ids else _suffixed(identifier, feed.name or "default")
            base_name = properties.get("name") or identifier.rpartition(":")[0] or identifier
            for aggregate in parameter.aggregates:
                primary = aggregate == parameter.aggregates[0]
                parameter_id = base if primary else _suffixed(base, aggregate)
                used_ids.add(parameter_id)
                channel = parameter.channels[aggregate]
                name = base_name if primary else f"{base_name} ({aggregate})"
                entry = {
                    "id": parameter_id,
                    "name": name,
                    "desc": properties.get("description") or name,
                    "conv": conversion_for(app, properties.get("conversion")),
                    "channels": [channel],
                }
                for source, target in (
                    ("minimumValue", "min"),
                    ("maximumValue", "max"),
                    ("warningMinimumValue", "warnMin"),
                    ("warningMaximumValue", "warnMax"),
                    ("units", "unit"),
                    ("formatString", "format"),
                ):
                    if properties.get(source) is not None:
                        entry[target] = properties[source]
                app.parameters.append(entry)
                app.channels.append(
                    {
                        "id": channel,
                        "name": f"{identifier} {aggregate}" + (f" [{feed.name}]" if feed.name else ""),
                        "source": "timestamped",
                        "type": "f64",
                        "interval": feed.interval,
                    }
                )
                app.place(path, parameter_id)

    for event_id, event in events.items():
        app = app_named(app_of(event_id))
        definition = {
            "id": event_definition_id(event_id),
            "code": event_id,
            "desc": event.get("description") or event_id,
        }
        if event.get("priority"):
            definition["pri"] = event["priority"].lower()
        used = [conversion_for(app, name) for name in event.get("conversions", []) if name in conversions]
        if used:
            definition["convs"] = used
        app.events.append(definition)

    return {name: app.document() for name, app in apps.items()}


def publish(format_layout, atlas_ids, atlas_documents):
    """Generate and publish the pair's config unless it exists; returns its identifier."""
    identifier = config_identifier(format_layout.format_id, atlas_ids)
    if not store.has_config(identifier):
        document = generate(format_layout, atlas_documents)
        store.put_config(identifier, JSON_CONTENT_TYPE, orjson.dumps(document))
    return identifier
