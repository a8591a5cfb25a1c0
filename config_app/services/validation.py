"""Validation of configuration JSON (``application/vnd.mat.config+json``).

The rules follow the RTA configuration schema: the document is an object of
applications keyed by name; each application may hold ``desc``, ``identity``,
``rda``, ``tree``, ``parameters``, ``channels``, ``conversions``, ``errors``
and ``events``, each checked for its required fields, types and enumerations.
On top of the schema, two reference rules are checked, because a config that
breaks them cannot be used:

- channel ids are unique within the document (sessions compose several
  configs by offsetting channel ids, so within one config they must be unique);
- every channel a parameter names is defined by some application of the document.

Unknown properties are accepted, as the schema allows. The first problem found
is reported as ``InvalidArgument`` with its path, e.g.
``demo.parameters[2].channels[0]: channel 7 is not defined``.
"""

import json
import re

from rta_core.errors import InvalidArgument, excerpt

CHANNEL_TYPES = ("u8", "s8", "u16", "s16", "u32", "s32", "f32", "3f32", "f64")
CHANNEL_SOURCES = ("can", "event", "periodic", "synchro", "timestamped", "row", "subSampledPeriodic")
PARAMETER_TYPES = ("std", "virt")
BYTE_ORDERS = ("le", "be")
FUNCTION_LANGUAGES = ("fdl", "sfdl", "C#", "fdl#", "fdl#Script")
EVENT_PRIORITIES = ("debug", "low", "medium", "high")
RDA_SUPPORT = ("supported", "notSupported")
APPLICATION_VERSION_ID = re.compile(r"[A-Fa-f0-9]{8}")


class ConfigError(InvalidArgument):
    """A configuration document breaks a rule; ``path`` says where."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# --- JSON text -------------------------------------------------------------------------------


def _reject_constant(name):
    raise InvalidArgument(f"invalid JSON: {name} is not a JSON value")


def parse_json(data):
    """The parsed document from UTF-8 (or UTF-16/32) ``data``; InvalidArgument when it is not JSON."""
    if not data:
        raise InvalidArgument("invalid JSON: the config is empty")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"invalid JSON: the text is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InvalidArgument("invalid JSON: nested too deeply") from None


def validate_config_json(data):
    """Parse and validate config JSON bytes; returns the document or raises InvalidArgument."""
    document = parse_json(data)
    validate_config(document)
    return document


# --- type checks -----------------------------------------------------------------------------


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value):
    # JSON Schema counts 1.0 as an integer.
    return _is_number(value) and (isinstance(value, int) or value.is_integer())


def _describe(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _Checker:
    """Checks one object's fields, building paths for messages."""

    def __init__(self, path, value, required=()):
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be an object, got {_describe(value)}")
        self.path = path
        self.value = value
        for name in required:
            if name not in value:
                raise ConfigError(path, f"missing required field '{name}'")

    def at(self, name):
        return f"{self.path}.{name}"

    def string(self, name, non_empty=False, choices=None, pattern=None):
        if name not in self.value:
            return None
        value = self.value[name]
        if not isinstance(value, str):
            raise ConfigError(self.at(name), f"must be a string, got {_describe(value)}")
        if non_empty and not value:
            raise ConfigError(self.at(name), "must not be empty")
        if choices is not None and value not in choices:
            raise ConfigError(self.at(name), f"must be one of {', '.join(choices)} (got {excerpt(value)})")
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(self.at(name), f"must match {pattern.pattern} (got {excerpt(value)})")
        return value

    def number(self, name):
        if name in self.value and not _is_number(self.value[name]):
            raise ConfigError(self.at(name), f"must be a number, got {_describe(self.value[name])}")

    def integer(self, name):
        if name not in self.value:
            return None
        value = self.value[name]
        if not _is_integer(value):
            got = repr(value) if _is_number(value) else _describe(value)
            raise ConfigError(self.at(name), f"must be an integer, got {got}")
        return int(value)

    def boolean(self, name):
        if name in self.value and not isinstance(self.value[name], bool):
            raise ConfigError(self.at(name), f"must be a boolean, got {_describe(self.value[name])}")

    def array(self, name, length=None):
        """The list under ``name`` (empty when absent) as ``(path, item)`` pairs."""
        if name not in self.value:
            return []
        value = self.value[name]
        if not isinstance(value, list):
            raise ConfigError(self.at(name), f"must be an array, got {_describe(value)}")
        if length is not None and len(value) != length:
            raise ConfigError(self.at(name), f"must have {length} items, got {len(value)}")
        return [(f"{self.at(name)}[{i}]", item) for i, item in enumerate(value)]

    def strings(self, name):
        for path, item in self.array(name):
            if not isinstance(item, str):
                raise ConfigError(path, f"must be a string, got {_describe(item)}")

    def numbers(self, name, length=None):
        for path, item in self.array(name, length):
            if not _is_number(item):
                raise ConfigError(path, f"must be a number, got {_describe(item)}")

    def obj(self, name, required=()):
        if name not in self.value:
            return None
        return _Checker(self.at(name), self.value[name], required)


# --- the document ----------------------------------------------------------------------------


def validate_config(document):
    """Check a parsed config document; raises ConfigError (an InvalidArgument) naming the first problem."""
    if not isinstance(document, dict):
        raise ConfigError("config", f"must be an object of applications keyed by name, got {_describe(document)}")
    channels = {}
    references = []  # (path, channel id) from parameters, checked once every channel is known
    for app_name, app in document.items():
        _application(app_name, app, channels, references)
    for path, channel_id in references:
        if channel_id not in channels:
            raise ConfigError(path, f"channel {channel_id} is not defined")


def _application(name, value, channels, references):
    app = _Checker(name or '""', value)
    app.string("desc")
    identity = app.obj("identity", required=("commsPath", "applicationVersionId"))
    if identity:
        identity.string("commsPath")
        identity.string("applicationVersionId", pattern=APPLICATION_VERSION_ID)
    rda = app.obj("rda", required=("ownerId", "support"))
    if rda:
        rda.integer("ownerId")
        rda.string("support", choices=RDA_SUPPORT)
    tree = app.obj("tree")
    if tree:
        for path, group in tree.array("groups"):
            _group(path, group)
        tree.strings("params")
    for path, item in app.array("parameters"):
        _parameter(path, item, references)
    for path, item in app.array("channels"):
        _channel(path, item, channels)
    for path, item in app.array("conversions"):
        _conversion(path, item)
    for path, item in app.array("errors"):
        _error(path, item)
    for path, item in app.array("events"):
        _event(path, item)


def _group(path, value, depth=0):
    if depth > 100:
        raise ConfigError(path, "parameter groups are nested too deeply")
    group = _Checker(path, value, required=("id",))
    group.string("id", non_empty=True)
    group.string("desc")
    for child_path, child in group.array("groups"):
        _group(child_path, child, depth + 1)
    group.strings("params")


def _parameter(path, value, references):
    parameter = _Checker(path, value, required=("id", "name", "desc", "conv"))
    parameter.string("type", choices=PARAMETER_TYPES)
    parameter.string("id", non_empty=True)
    parameter.string("name", non_empty=True)
    parameter.string("desc", non_empty=True)
    for name in ("min", "max", "warnMin", "warnMax", "offset"):
        parameter.number(name)
    for name in ("format", "unit", "mask", "errorMask", "conv"):
        parameter.string(name)
    parameter.string("byteOrder", choices=BYTE_ORDERS)
    parameter.integer("shift")
    for item_path, channel_id in parameter.array("channels"):
        if not _is_integer(channel_id):
            raise ConfigError(item_path, f"must be an integer channel id, got {_describe(channel_id)}")
        references.append((item_path, int(channel_id)))
    func = parameter.obj("func", required=("code",))
    if func:
        func.string("lang", choices=FUNCTION_LANGUAGES)
        func.string("code")


def _channel(path, value, channels):
    channel = _Checker(path, value, required=("id",))
    channel_id = channel.integer("id")
    channel.string("name")
    channel.string("source", choices=CHANNEL_SOURCES)
    channel.string("type", choices=CHANNEL_TYPES)
    channel.integer("interval")
    if channel_id in channels:
        raise ConfigError(channel.at("id"), f"channel {channel_id} is already defined at {channels[channel_id]}")
    channels[channel_id] = path


def _conversion(path, value):
    conversion = _Checker(path, value, required=("name",))
    conversion.string("name", non_empty=True)
    conversion.string("unit")
    conversion.string("format")
    rational = conversion.obj("rational", required=("coeffs",))
    if rational:
        rational.numbers("coeffs", length=6)
    table = conversion.obj("table", required=("raw", "calibrated"))
    if table:
        table.numbers("raw")
        table.numbers("calibrated")
        table.boolean("interpolated")
    text = conversion.obj("text", required=("keys", "values"))
    if text:
        text.numbers("keys")
        text.strings("values")
        text.string("default")
    formula = conversion.obj("formula", required=("code",))
    if formula:
        formula.string("code")


def _error(path, value):
    error = _Checker(path, value, required=("name", "group", "current", "logged"))
    for name in ("name", "desc", "group", "current", "logged"):
        error.string(name, non_empty=True)
    error.integer("bit")


def _event(path, value):
    event = _Checker(path, value, required=("id",))
    event.integer("id")
    event.string("code")
    event.string("desc")
    event.string("pri", choices=EVENT_PRIORITIES)
    event.strings("convs")
