"""How large a request body each endpoint takes, checked before the body is read.

Most endpoints take small bodies (a session query form): RTA_HTTP_MAX_BODY_BYTES.
A few take documents with a limit of their own. The HTTP server
(``rta_site.http_server``) refuses a larger body from its ``Content-Length``
before reading it, and counts a chunked one as it arrives; the middleware here
does the same check for any other ASGI server and Django's test client.
"""

from django.conf import settings
from django.urls import Resolver404, resolve

from rta_core.responses import json_error

# A multipart form carries a little around the file it uploads.
_FORM_MARGIN = 64 * 1024

# URL names (as ``resolve()`` gives them) of endpoints with a limit of their own: the setting, and the margin.
_OWN_LIMITS = {
    "dependency": ("RTA_DEPENDENCY_MAX_BYTES", 0),
    "dependencies": ("RTA_DEPENDENCY_MAX_BYTES", 0),
    "admin:config_app_config_publish": ("RTA_CONFIG_MAX_BYTES", _FORM_MARGIN),
}


def body_limit(path):
    """Largest request body, in bytes, the endpoint at ``path`` (decoded, without the query) accepts."""
    try:
        name = resolve(path).view_name
    except Resolver404:
        name = None
    setting, margin = _OWN_LIMITS.get(name, ("RTA_HTTP_MAX_BODY_BYTES", 0))
    return getattr(settings, setting) + margin


def too_large_message(limit, length=None):
    size = f" ({length} bytes)" if length is not None else ""
    return f"the request body{size} is over this endpoint's limit of {limit} bytes"


class BodyLimitMiddleware:
    """Answers 413 JSON to a request whose ``Content-Length`` is over its endpoint's limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        declared = request.META.get("CONTENT_LENGTH")
        if declared:
            if not declared.isdigit():
                return json_error("Content-Length must be a number of bytes", 400)
            limit = body_limit(request.path_info)
            if int(declared) > limit:
                return json_error(too_large_message(limit, int(declared)), 413)
        return self.get_response(request)
