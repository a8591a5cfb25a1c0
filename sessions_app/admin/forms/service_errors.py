"""The service's ``InvalidArgument`` as form errors: its message, and the form field or inline row it names.

The service names the argument an error concerns in ``field``: a session property (``quality``,
``end_time``, ``details``...) or an item of an op's list (``markers[2].end_time``: the third marker given).
"""

import re

from django.core.exceptions import ValidationError

_OP_PREFIX = re.compile(r"^updates\[\d+\] \w+: ")
_ITEM = re.compile(r"^(?P<collection>\w+)\[(?P<index>\d+)\](?:\.(?P<field>\w+))?")


def message(exc):
    """The error's message without the ``updates[i] op:`` prefix (the form already says where)."""
    return _OP_PREFIX.sub("", exc.message)


def as_validation_error(exc):
    return ValidationError(message(exc))


def property_name(exc):
    """The session property the error names (``details`` for ``details.Driver``), or None."""
    if not exc.field or _ITEM.match(exc.field):
        return None
    return re.split(r"[.\[]", exc.field, maxsplit=1)[0]


def item(exc):
    """``(collection, index, field)`` when the error names an item of an op's list, else None."""
    match = _ITEM.match(exc.field or "")
    if match is None:
        return None
    return match["collection"], int(match["index"]), match["field"]
