"""ASGI entry point: HTTP (Django, with static files for the admin) and WebSocket (Channels, behind bearer tokens)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rta_site.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from django.core.handlers.asgi import ASGIHandler  # noqa: E402


class _Handler(ASGIHandler):
    # Django re-slices every streamed block into messages of this size (a copy, unless the
    # block fits whole); data responses stream blocks of a little over 1 MiB
    # (data_app.store.reader.BLOCK_SIZE), so they go out as they are.
    chunk_size = 8 << 20


django_http = _Handler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from data_app.live.http import StreamPathGuard  # noqa: E402
from rta_site.auth.websocket import BearerTokenWebSocketMiddleware  # noqa: E402
from rta_site.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # A plain GET of a live stream path is answered 400 (it is WebSocket only).
        "http": StreamPathGuard(ASGIStaticFilesHandler(django_http)),
        # With RTA_AUTH_ENABLED, a handshake without a valid read token is refused before the upgrade.
        "websocket": BearerTokenWebSocketMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
