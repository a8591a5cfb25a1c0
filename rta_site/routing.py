"""WebSocket routes of every app; any other WebSocket path is refused with 404."""

from django.urls import re_path

from data_app.live.routing import websocket_urlpatterns as live_urlpatterns
from data_app.live.transport import deny


async def not_found(scope, receive, send):
    await receive()  # websocket.connect
    await deny(scope, send, 404, f"no WebSocket endpoint at {scope.get('path', '')}")


websocket_urlpatterns = [*live_urlpatterns, re_path(r"", not_found)]
