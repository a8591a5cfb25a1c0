"""The one place a transport adapter turns credentials into an ``Access``, from the settings.

``authenticate(authorization)`` is what the REST middleware, the WebSocket
middleware and the gRPC interceptor call with the ``Authorization`` value
they received (``None`` when absent). With ``RTA_AUTH_ENABLED`` off every caller
has full access; on, a missing or bad token is ``Unauthenticated`` and a valid
one yields the access its scopes (and folders claim) grant.
"""

import threading

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from rta_core.access import Access
from rta_core.errors import PermissionDenied, Unauthenticated
from rta_site.auth.claims import access_from_claims, bearer_token
from rta_site.auth.tokens import TokenValidator

READ, WRITE = "read", "write"

_validator = None
_validator_lock = threading.Lock()


def enabled():
    return settings.RTA_AUTH_ENABLED


def authority_url():
    """The issuer base URL tokens are checked against (the embedded authority's own under ``/o``)."""
    authority = settings.RTA_AUTH_AUTHORITY
    if authority == "embedded":
        return f"{settings.RTA_PUBLIC_URL.rstrip('/')}/o"
    return authority


def scope_name(need):
    return settings.RTA_AUTH_READ_SCOPE if need == READ else settings.RTA_AUTH_WRITE_SCOPE


def validator():
    """The process's token validator, made from the settings on first use."""
    global _validator
    current = _validator
    if current is None:
        with _validator_lock:
            if _validator is None:
                read, write, folders = (
                    settings.RTA_AUTH_READ_SCOPE,
                    settings.RTA_AUTH_WRITE_SCOPE,
                    settings.RTA_AUTH_FOLDERS_CLAIM or None,
                )
                _validator = TokenValidator(
                    authority_url(),
                    settings.RTA_AUTH_AUDIENCE,
                    lambda claims: access_from_claims(claims, read, write, folders),
                    leeway=settings.RTA_AUTH_LEEWAY_SECONDS,
                )
            current = _validator
    return current


@receiver(setting_changed)
def _forget_validator(setting, **kwargs):
    global _validator
    if setting.startswith("RTA_AUTH_") or setting == "RTA_PUBLIC_URL":
        _validator = None


def authenticate(authorization):
    """The caller's access from its ``Authorization`` value (``str``, ``bytes`` or ``None``)."""
    if not settings.RTA_AUTH_ENABLED:
        return Access.ANONYMOUS_FULL
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
    return validator().validate(token)


def cached_access(authorization):
    """The access of an already verified token, without any I/O; ``None`` if it must be checked."""
    if not settings.RTA_AUTH_ENABLED:
        return Access.ANONYMOUS_FULL
    try:
        token = bearer_token(authorization)
    except Unauthenticated:
        return None
    return validator().cached(token) if token is not None else None


def require(access, need):
    """``PermissionDenied`` unless ``access`` allows ``need`` (READ or WRITE)."""
    allowed = access.can_read if need == READ else access.can_write
    if not allowed:
        raise PermissionDenied(f"the token lacks the {scope_name(need)} scope")
