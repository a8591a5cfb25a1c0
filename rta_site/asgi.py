"""ASGI entry point: HTTP (Django, with static files for the admin) and WebSocket (Channels)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rta_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from data_app.live.http import StreamPathGuard  # noqa: E402
from rta_site.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # A plain GET of a live stream path is answered 400 (it is WebSocket only).
        "http": StreamPathGuard(ASGIStaticFilesHandler(django_http)),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
