"""The one rule for identities: the names sessions, folders, data and configs go by.

An identity is Unicode text of 1 to ``MAX_IDENTITY_LENGTH`` characters without
NUL: the columns holding session, folder, binding and chunk identities are
``varchar(1024)``, PostgreSQL text cannot hold NUL, and UTF-8 (the database's
and the segment file names' encoding) cannot hold a lone surrogate. Whatever
brings an identity in (gRPC, REST, the ingest, the admin) calls
``validate_identity`` before anything is stored or looked up, so a bad one is
the client's mistake (InvalidArgument, or NotFound for a lookup of what cannot
exist), never a database error.
"""

from rta_core.errors import InvalidArgument, excerpt

MAX_IDENTITY_LENGTH = 1024  # the varchar(1024) identity columns


def validate_identity(value, what="identity", limit=MAX_IDENTITY_LENGTH):
    """``value`` if it is a valid identity; else InvalidArgument naming ``what``.

    ``limit`` is for identities held in wider columns (config identifiers are
    hashed, and may be longer).
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidArgument(f"{what} is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise InvalidArgument(f"{what} {excerpt(value)} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} {excerpt(value)} is not valid Unicode text") from None
    return value


def is_identity(value, limit=MAX_IDENTITY_LENGTH):
    """Whether ``value`` passes ``validate_identity`` (for look-ups: no stored thing has an invalid identity)."""
    try:
        validate_identity(value, limit=limit)
    except InvalidArgument:
        return False
    return True
