"""Apply a service call and undo it: how an adapter learns what the service would refuse before it saves.

The admin's forms show the service's own errors this way (with the ``field`` each names), so no rule is
checked twice: the service stays the only judge.
"""

from django.db import DataError, IntegrityError, transaction

from rta_core.errors import InvalidArgument


class _RolledBack(Exception):
    """Raised inside the savepoint to undo everything the call did."""


def run(apply):
    """Call ``apply()`` in a savepoint that is always rolled back.

    Raises the service's ``InvalidArgument``; shapes the service does not expect (a list where an object
    belongs) and values the database refuses (NUL in PostgreSQL text) become ``InvalidArgument`` too.
    """
    try:
        with transaction.atomic():
            apply()
            raise _RolledBack
    except _RolledBack:
        pass
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise InvalidArgument(f"malformed value: {exc}") from None
    except (DataError, IntegrityError) as exc:
        # The savepoint is rolled back; report what the database refused.
        raise InvalidArgument(f"the database refused the change: {str(exc).splitlines()[0]}") from None
