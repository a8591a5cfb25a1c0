"""Plain HTTP requests for the live stream path get 400: it only speaks WebSocket (spec §10).

An ASGI wrapper in front of the HTTP application, because daphne hands
WebSocket upgrades to the WebSocket router and everything else to Django.
"""

import json
import re

from data_app.live import SUBPROTOCOL

STREAM_PATH = re.compile(r"^/rta/v2/sessions/(?P<identity>.+)/stream$")


class StreamPathGuard:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not STREAM_PATH.match(scope.get("path", "")):
            return await self.app(scope, receive, send)
        body = json.dumps(
            {"error": f"this is a WebSocket endpoint: upgrade with the {SUBPROTOCOL} sub-protocol"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
