"""From verified token claims to an ``Access``: scopes and the folders claim."""

from rta_core.access import Access
from rta_core.errors import Unauthenticated


def scopes_of(claims):
    """The token's scopes: the ``scope`` string (RFC 9068), else ``scp`` (a list, or a string as Entra ID sends)."""
    value = claims.get("scope")
    if value is None:
        value = claims.get("scp")
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple):
        return frozenset(s for s in value if isinstance(s, str))
    return frozenset()


def folders_of(claims, folders_claim):
    """The folder identities a token is limited to, or ``None`` (no claim configured, or none in the token)."""
    if not folders_claim or folders_claim not in claims:
        return None
    value = claims[folders_claim]
    if isinstance(value, str):
        return (value,)  # a single folder (some issuers cannot put lists in custom claims)
    if isinstance(value, list | tuple) and all(isinstance(f, str) for f in value):
        return tuple(dict.fromkeys(value))
    raise Unauthenticated(f"token claim {folders_claim} is not a list of folder identities")


def access_from_claims(claims, read_scope, write_scope, folders_claim=None):
    scopes = scopes_of(claims)
    subject = claims.get("sub") or claims.get("client_id") or claims.get("azp")
    return Access(
        can_read=read_scope in scopes,
        can_write=write_scope in scopes,
        folders=folders_of(claims, folders_claim),
        subject=subject if isinstance(subject, str) else None,
    )


def bearer_token(authorization):
    """The token of an ``Authorization: Bearer <token>`` value; ``None`` when there is no such header.

    ``Unauthenticated`` for a header that is there but not a single bearer token.
    """
    if authorization is None:
        return None
    if isinstance(authorization, bytes):
        try:
            authorization = authorization.decode("latin-1")
        except UnicodeDecodeError:
            raise Unauthenticated("malformed Authorization header") from None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token
