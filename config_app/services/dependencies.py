"""Advanced Streams dependencies: JSON documents published under a type and an id.

Sessions on an Advanced Streams topic do not carry their data format or ATLAS
configuration: they name them in ``dependencies`` (type -> ids) and the
documents are fetched from here. The rules:

- A type is 1-64 characters: a letter, then letters, digits, ``_``, ``.`` or
  ``-``. An id is 1-256 characters without ``/`` or control characters.
- Documents are immutable. Publishing an id that exists with the same content
  (compared as canonical JSON) is a no-op that succeeds; with different
  content it is a ``Conflict``. Publishing without an id names the document
  by its content hash (the first 12 hex digits of the SHA-256 of its
  canonical JSON: sorted keys, no spaces, UTF-8), so the same document always
  gets the same id.
- The two types the ingest reads are validated when published, so a
  document the ingest cannot use is refused up front (``InvalidArgument``
  naming the offending path):

  ``dataFormat``: ``{"feeds": {"<feed>": {"parameters": [{"identifier":
  "vCar:Chassis", "aggregates": "avg"}, ...], "frequency": 100.0}}}``;
  ``""`` is the default feed; ``aggregates`` is a string of names separated
  by commas, spaces or ``|`` (or a list) from avg, min, max, first (default
  avg); a parameter may also be given as its identifier alone; identifiers
  are unique within a feed; ``frequency`` (Hz, > 0) is optional.

  ``atlasConfiguration``: ``{"appGroups": {"<app>": {"groups": {"<group>":
  {"parameters": {"<identifier>": {"name", "description", "units",
  "formatString", "minimumValue", "maximumValue", "warningMinimumValue",
  "warningMaximumValue", "conversion"}}, "groups": {...}}}}},
  "conversions": {"<name>": {<an RTA config conversion without its name>}},
  "events": {"<event id>": {"description", "priority", "conversions"}}}``;
  every member is optional.
"""

import hashlib
import re

import orjson
from django.db import IntegrityError, transaction

from config_app.models import Dependency
from config_app.services.validation import validate_config
from rta_core.errors import InvalidArgument, NotFound, ServiceError, excerpt

DATA_FORMAT = "dataFormat"
ATLAS_CONFIGURATION = "atlasConfiguration"
AGGREGATES = ("avg", "min", "max", "first")
EVENT_PRIORITIES = ("debug", "low", "medium", "high")
MAX_ID_LENGTH = 256
_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_BAD_ID_RE = re.compile(r"[/\x00-\x1f\x7f]")
_AGGREGATE_SPLIT = re.compile(r"[\s,|]+")


class Conflict(ServiceError):
    """An id already holds a different document (dependencies never change)."""

    http_status = 409


# --- arguments -------------------------------------------------------------------------------


def check_type(dependency_type):
    if not isinstance(dependency_type, str) or not _TYPE_RE.fullmatch(dependency_type):
        raise InvalidArgument(
            f"dependency type {excerpt(dependency_type)} is not 1-64 letters, digits, '_', '.' or '-' "
            "starting with a letter"
        )
    return dependency_type


def check_id(dependency_id):
    if not isinstance(dependency_id, str) or not dependency_id:
        raise InvalidArgument("dependency id must not be empty")
    if len(dependency_id) > MAX_ID_LENGTH:
        raise InvalidArgument(f"dependency id is {len(dependency_id)} characters long; the limit is {MAX_ID_LENGTH}")
    if _BAD_ID_RE.search(dependency_id):
        raise InvalidArgument("dependency id must not contain '/' or control characters")
    return dependency_id


def canonical_json(document):
    """The bytes that identify a document: sorted keys, no insignificant spaces."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidArgument(f"document is not JSON: {exc}") from None


def content_id(document):
    """The id a document gets when published without one."""
    return hashlib.sha256(canonical_json(document)).hexdigest()[:12]


def parse_document(data):
    """A JSON document from request or file bytes (InvalidArgument if not JSON)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"document is not valid JSON: {exc}") from None


# --- validation of the types the ingest reads ------------------------------------------------


def _fail(path, problem):
    raise InvalidArgument(f"{path}: {problem}")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_aggregates(value, path="aggregates"):
    """Aggregate names (ordered as ``AGGREGATES``) from a data-format ``aggregates`` value."""
    if value is None:
        return ["avg"]
    if isinstance(value, str):
        names = [n for n in _AGGREGATE_SPLIT.split(value.strip()) if n]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = value
    else:
        _fail(path, "must be a string of aggregate names or a list of them")
    found = set()
    for name in names:
        lowered = name.lower()
        if lowered not in AGGREGATES:
            _fail(path, f"unknown aggregate {excerpt(name)} (expected {', '.join(AGGREGATES)})")
        found.add(lowered)
    if not found:
        return ["avg"]
    return [a for a in AGGREGATES if a in found]


def validate_data_format(document):
    if not isinstance(document, dict):
        _fail("dataFormat", "must be a JSON object")
    feeds = document.get("feeds")
    if not isinstance(feeds, dict) or not feeds:
        _fail("dataFormat.feeds", "must be a non-empty object of feeds")
    for feed_name, feed in feeds.items():
        path = f"dataFormat.feeds[{excerpt(feed_name)}]"
        if not isinstance(feed, dict):
            _fail(path, "must be a JSON object")
        frequency = feed.get("frequency")
        if frequency is not None and (not _is_number(frequency) or not frequency > 0):
            _fail(f"{path}.frequency", f"must be a positive number of Hz, got {excerpt(frequency)}")
        parameters = feed.get("parameters")
        if not isinstance(parameters, list):
            _fail(f"{path}.parameters", "must be a list")
        seen = set()
        for index, parameter in enumerate(parameters):
            item_path = f"{path}.parameters[{index}]"
            if isinstance(parameter, str):
                identifier = parameter
            elif isinstance(parameter, dict):
                identifier = parameter.get("identifier")
                parse_aggregates(parameter.get("aggregates"), f"{item_path}.aggregates")
            else:
                _fail(item_path, "must be an object or an identifier")
            if not isinstance(identifier, str) or not identifier:
                _fail(f"{item_path}.identifier", "must be a non-empty string")
            if identifier in seen:
                _fail(f"{item_path}.identifier", f"{excerpt(identifier)} appears twice in the feed")
            seen.add(identifier)


_PARAMETER_STRINGS = ("name", "description", "units", "formatString", "conversion")
_PARAMETER_NUMBERS = ("minimumValue", "maximumValue", "warningMinimumValue", "warningMaximumValue")


def _validate_groups(groups, path, depth=0):
    if depth > 32:
        _fail(path, "parameter groups are nested too deeply")
    if not isinstance(groups, dict):
        _fail(path, "must be an object of groups")
    for name, group in groups.items():
        group_path = f"{path}[{excerpt(name)}]"
        if not name:
            _fail(group_path, "group names must not be empty")
        if not isinstance(group, dict):
            _fail(group_path, "must be a JSON object")
        parameters = group.get("parameters", {})
        if not isinstance(parameters, dict):
            _fail(f"{group_path}.parameters", "must be an object of parameters by identifier")
        for identifier, parameter in parameters.items():
            parameter_path = f"{group_path}.parameters[{excerpt(identifier)}]"
            if not identifier:
                _fail(parameter_path, "identifiers must not be empty")
            if not isinstance(parameter, dict):
                _fail(parameter_path, "must be a JSON object")
            for key in _PARAMETER_STRINGS:
                if key in parameter and not isinstance(parameter[key], str):
                    _fail(f"{parameter_path}.{key}", "must be a string")
            for key in _PARAMETER_NUMBERS:
                if key in parameter and not _is_number(parameter[key]):
                    _fail(f"{parameter_path}.{key}", "must be a number")
        if "groups" in group:
            _validate_groups(group["groups"], f"{group_path}.groups", depth + 1)


def validate_atlas_configuration(document):
    if not isinstance(document, dict):
        _fail("atlasConfiguration", "must be a JSON object")
    app_groups = document.get("appGroups", {})
    if not isinstance(app_groups, dict):
        _fail("atlasConfiguration.appGroups", "must be an object of application groups")
    for name, app in app_groups.items():
        path = f"atlasConfiguration.appGroups[{excerpt(name)}]"
        if not name:
            _fail(path, "application group names must not be empty")
        if not isinstance(app, dict):
            _fail(path, "must be a JSON object")
        _validate_groups(app.get("groups", {}), f"{path}.groups")
    conversions = document.get("conversions", {})
    if not isinstance(conversions, dict) or not all(isinstance(c, dict) and n for n, c in conversions.items()):
        _fail("atlasConfiguration.conversions", "must be an object of conversions (objects) by name")
    if conversions:
        # The same rules as conversions in an RTA config, which is where they end up.
        try:
            validate_config({"conversions": {"conversions": [{**c, "name": n} for n, c in conversions.items()]}})
        except InvalidArgument as exc:
            raise InvalidArgument(f"atlasConfiguration.{exc.message}") from None
    events = document.get("events", {})
    if not isinstance(events, dict):
        _fail("atlasConfiguration.events", "must be an object of event definitions by event id")
    for event_id, event in events.items():
        path = f"atlasConfiguration.events[{excerpt(event_id)}]"
        if not event_id or not isinstance(event, dict):
            _fail(path, "must be a JSON object under a non-empty event id")
        if "description" in event and not isinstance(event["description"], str):
            _fail(f"{path}.description", "must be a string")
        priority = event.get("priority")
        if priority is not None and (not isinstance(priority, str) or priority.lower() not in EVENT_PRIORITIES):
            _fail(f"{path}.priority", f"must be one of {', '.join(EVENT_PRIORITIES)}")
        conversions_used = event.get("conversions", [])
        if not isinstance(conversions_used, list) or not all(isinstance(c, str) for c in conversions_used):
            _fail(f"{path}.conversions", "must be a list of conversion names")


VALIDATORS = {DATA_FORMAT: validate_data_format, ATLAS_CONFIGURATION: validate_atlas_configuration}


# --- publishing and reading ------------------------------------------------------------------


def publish(dependency_type, document, dependency_id=None):
    """Publish ``document``; returns ``(id, created)``. ``Conflict`` if the id holds other content."""
    check_type(dependency_type)
    if not isinstance(document, dict):
        raise InvalidArgument("a dependency document must be a JSON object")
    encoded = canonical_json(document)
    digest = hashlib.sha256(encoded).hexdigest()
    dependency_id = check_id(digest[:12] if dependency_id is None else dependency_id)
    validator = VALIDATORS.get(dependency_type)
    if validator is not None:
        validator(document)
    existing = Dependency.objects.filter(type=dependency_type, identifier=dependency_id).first()
    if existing is None:
        try:
            with transaction.atomic():
                Dependency.objects.create(
                    type=dependency_type, identifier=dependency_id, document=document, sha256=digest, size=len(encoded)
                )
            return dependency_id, True
        except IntegrityError:
            # Published concurrently: compare with the winner.
            existing = Dependency.objects.get(type=dependency_type, identifier=dependency_id)
    if existing.sha256 != digest:
        raise Conflict(
            f"{dependency_type} {excerpt(dependency_id)} is already published with different content "
            "(dependencies never change: publish the new document under a new id)"
        )
    return dependency_id, False


def find(dependency_type, dependency_id):
    """The document, or None."""
    row = (
        Dependency.objects.filter(type=dependency_type, identifier=dependency_id)
        .values_list("document", flat=True)
        .first()
    )
    return row


def get(dependency_type, dependency_id):
    """The Dependency row; NotFound when absent."""
    check_type(dependency_type)
    check_id(dependency_id)
    row = Dependency.objects.filter(type=dependency_type, identifier=dependency_id).first()
    if row is None:
        raise NotFound(f"{dependency_type} {excerpt(dependency_id)} not found")
    return row


def delete(dependency_type, dependency_id):
    """Delete one document; True if it existed."""
    deleted, _ = Dependency.objects.filter(type=dependency_type, identifier=dependency_id).delete()
    return bool(deleted)
