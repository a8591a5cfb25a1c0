"""Run the existing suite with auth on: ``pytest -p tests.auth_mode``.

A pytest plugin. For the whole session it turns RTA_AUTH_ENABLED on against an
independent test issuer (``tests.auth_issuer``) and makes the in-process clients
send a token with every scope: Django's test client and request factory (a
default ``Authorization`` header), Channels' ``WebsocketCommunicator`` (the
handshake's ``authorization`` header), and gRPC channels (``grpc.insecure_channel``
and ``grpc.aio.insecure_channel`` send it as metadata). Every test then runs
through the real token checks. A test asserting auth-off behaviour (for instance
``requiresAuthentication: false``) asks ``active()`` which mode it runs in.
Servers the tests start in other processes are started without RTA_* variables
and so run with auth off (``make test-auth`` leaves out the files that only test
such servers).
"""

import grpc
import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django.test.client import AsyncRequestFactory, RequestFactory

from rta_site.auth.client import aio_interceptors, authorized_channel
from tests.auth_issuer import AUDIENCE, Issuer

_active = False


def active():
    """Whether this run has auth on (``pytest -p tests.auth_mode``)."""
    return _active


@pytest.fixture(scope="session", autouse=True)
def _auth_on_for_the_session():
    global _active
    issuer = Issuer()
    token = issuer.token("rta.read rta.write", lifetime=24 * 3600)
    environ = {"RTA_AUTH_TOKEN": token}
    overrides = override_settings(RTA_AUTH_ENABLED=True, RTA_AUTH_AUTHORITY=issuer.url, RTA_AUTH_AUDIENCE=AUDIENCE)
    overrides.enable()
    patch = pytest.MonkeyPatch()
    factory_init = RequestFactory.__init__

    def init(self, *args, **kwargs):
        factory_init(self, *args, **kwargs)
        # The async factory sends its defaults as ASGI headers named as they are (lower-cased).
        name = "authorization" if isinstance(self, AsyncRequestFactory) else "HTTP_AUTHORIZATION"
        self.defaults.setdefault(name, f"Bearer {token}")

    communicator_init = WebsocketCommunicator.__init__

    def communicator(self, application, path, headers=None, *args, **kwargs):
        headers = list(headers or [])
        if not any(name.lower() == b"authorization" for name, _ in headers):
            headers.append((b"authorization", f"Bearer {token}".encode()))
        communicator_init(self, application, path, headers, *args, **kwargs)

    insecure_channel, aio_channel = grpc.insecure_channel, grpc.aio.insecure_channel

    def channel(*args, **kwargs):
        return authorized_channel(insecure_channel(*args, **kwargs), environ)

    def aio(*args, interceptors=None, **kwargs):
        return aio_channel(*args, interceptors=[*(interceptors or ()), *aio_interceptors(environ)], **kwargs)

    patch.setattr(RequestFactory, "__init__", init)
    patch.setattr(WebsocketCommunicator, "__init__", communicator)
    patch.setattr(grpc, "insecure_channel", channel)
    patch.setattr(grpc.aio, "insecure_channel", aio)
    _active = True
    try:
        yield issuer
    finally:
        _active = False
        patch.undo()
        overrides.disable()
        issuer.close()


def pytest_collection_modifyitems(config, items):
    # The auth tests set auth up themselves, anonymous calls included.
    kept = [item for item in items if not item.module.__name__.startswith("tests.test_auth_")]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
