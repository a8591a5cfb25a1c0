"""Bearer tokens on WebSockets: a handshake without a valid read token is refused before the upgrade.

The token comes in the ``Authorization`` header of the handshake. Refusals
answer the handshake with an HTTP status (401, 403; 503 when the authority
cannot be reached) through ``data_app.live.transport.deny``: under daphne the
client sees that status, under a server without the ``websocket.http.response``
extension a close before accept (daphne's default: 403). The access is put in
``scope["rta_access"]`` for the consumer.
"""

import asyncio

from data_app.live.transport import deny
from rta_core.errors import ServiceError
from rta_site.auth.authenticate import READ, authenticate, cached_access, require


class BearerTokenWebSocketMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        authorization = _header(scope, b"authorization")
        try:
            access = cached_access(authorization)
            if access is None:  # not verified before: may fetch the authority's keys, so off the event loop
                access = await asyncio.to_thread(authenticate, authorization)
            require(access, READ)
        except ServiceError as exc:
            await receive()  # websocket.connect
            await deny(scope, send, exc.http_status, exc.message)
            return None
        return await self.inner({**scope, "rta_access": access}, receive, send)


def _header(scope, name):
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value
    return None
