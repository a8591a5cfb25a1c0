"""Bearer tokens on the REST API: ``/rta/v2/*`` (but ``/rta/v2/info``) and ``/api/dependencies``.

Reads need the read scope; writes (dependency publishing) the write scope.
``POST /rta/v2/sessions`` is a query (spec §2), so a read. Everything else
(``/``, ``/health``, ``/metrics``, ``/rta/v2/info``, the admin with Django's own
login, static files) stays open. Views find the caller's access on
``request.rta_access``.

A missing or bad token is 401 with ``WWW-Authenticate: Bearer`` (``error="invalid_token"``
when a token was sent), a missing scope 403, both with a JSON ``{"error": ...}``.
The embedded authority's endpoints (``/o/``) answer 404 unless it is configured.
"""

from django.conf import settings

from rta_core.access import Access
from rta_core.errors import PermissionDenied, ServiceError, Unauthenticated
from rta_core.responses import json_error
from rta_site.auth.authenticate import READ, WRITE, authenticate, require, scope_name

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_PATHS = frozenset({"/rta/v2/info"})
_READ_POSTS = frozenset({"/rta/v2/sessions"})  # POST with a query: a read
_PROTECTED_PREFIXES = ("/rta/v2/", "/api/dependencies")
_AUTHORITY_PREFIX = "/o/"


def required_scope(path, method):
    """READ, WRITE, or ``None`` for a path that stays open."""
    if path in _OPEN_PATHS or not (path.startswith(_PROTECTED_PREFIXES) or path == "/rta/v2"):
        return None
    if method in _SAFE_METHODS or (method == "POST" and path in _READ_POSTS):
        return READ
    return WRITE


class BearerTokenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if path.startswith(_AUTHORITY_PREFIX) and settings.RTA_AUTH_AUTHORITY != "embedded":
            return json_error("not found", 404)
        need = required_scope(path, request.method)
        if need is None:
            request.rta_access = Access.NOBODY if settings.RTA_AUTH_ENABLED else Access.ANONYMOUS_FULL
            return self.get_response(request)
        authorization = request.META.get("HTTP_AUTHORIZATION")
        try:
            access = authenticate(authorization)
            require(access, need)
        except Unauthenticated as exc:
            response = json_error(exc.message, 401)
            response["WWW-Authenticate"] = _challenge(invalid=authorization is not None, message=exc.message)
            return response
        except PermissionDenied as exc:
            response = json_error(exc.message, 403)
            response["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope_name(need)}"'
            return response
        except ServiceError as exc:  # the authority cannot be reached (503)
            return json_error(exc.message, exc.http_status)
        request.rta_access = access
        return self.get_response(request)


def _challenge(invalid, message):
    if not invalid:
        return 'Bearer realm="rta"'
    return f'Bearer realm="rta", error="invalid_token", error_description="{message}"'
