"""WebSocket routes of the live stream (included by ``rta_site.routing``)."""

from django.urls import re_path

from data_app.live.consumer import LiveStreamConsumer

websocket_urlpatterns = [
    re_path(r"^rta/v2/sessions/(?P<identity>.+)/stream$", LiveStreamConsumer.as_asgi()),
]
