"""Bearer tokens for the repository's own network clients (benchmarks, scripts), from the environment.

- ``RTA_AUTH_TOKEN``: a token to send as it is (``manage.py issue_token`` prints one);
- else ``RTA_AUTH_CLIENT_ID`` + ``RTA_AUTH_CLIENT_SECRET``: the client credentials grant
  against the token endpoint of ``RTA_AUTH_AUTHORITY`` (its discovery document names
  it; ``embedded`` means ``{RTA_PUBLIC_URL}/o``), asking for ``RTA_AUTH_SCOPES`` if set.
  The token is reused until shortly before it expires;
- else nothing is sent (auth off).

Imports no Django, so a client process need not set it up.
"""

import os
import threading
import time

import grpc
import httpx
from grpc import aio

_RENEW_BEFORE_SECONDS = 60
_lock = threading.Lock()
_cached = {}  # (token endpoint, client id, scopes) -> (token, expiry as monotonic time)


def bearer_token(environ=None):
    """The token to send, or ``None`` when the environment names no credentials."""
    env = os.environ if environ is None else environ
    token = (env.get("RTA_AUTH_TOKEN") or "").strip()
    if token:
        return token
    client_id, secret = env.get("RTA_AUTH_CLIENT_ID"), env.get("RTA_AUTH_CLIENT_SECRET")
    if not client_id or not secret:
        return None
    authority = (env.get("RTA_AUTH_AUTHORITY") or "embedded").rstrip("/")
    if authority == "embedded":
        authority = f"{(env.get('RTA_PUBLIC_URL') or 'http://127.0.0.1:8080').rstrip('/')}/o"
    return client_credentials_token(authority, client_id, secret, env.get("RTA_AUTH_SCOPES") or None)


def client_credentials_token(authority, client_id, secret, scopes=None):
    """An access token from ``authority``'s token endpoint (cached until shortly before it expires)."""
    with _lock:
        key = (authority, client_id, scopes)
        cached = _cached.get(key)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        discovery = httpx.get(f"{authority}/.well-known/openid-configuration", timeout=10, follow_redirects=True)
        discovery.raise_for_status()
        form = {"grant_type": "client_credentials"}
        if scopes:
            form["scope"] = scopes
        response = httpx.post(discovery.json()["token_endpoint"], data=form, auth=(client_id, secret), timeout=10)
        response.raise_for_status()
        answer = response.json()
        lifetime = float(answer.get("expires_in") or 300)
        _cached[key] = (answer["access_token"], time.monotonic() + max(0.0, lifetime - _RENEW_BEFORE_SECONDS))
        return answer["access_token"]


def http_headers(environ=None):
    """``{"Authorization": "Bearer ..."}``, or ``{}``."""
    token = bearer_token(environ)
    return {"Authorization": f"Bearer {token}"} if token else {}


def grpc_metadata(environ=None):
    """``(("authorization", "Bearer ..."),)``, or ``()``."""
    token = bearer_token(environ)
    return (("authorization", f"Bearer {token}"),) if token else ()


def authorized_channel(channel, environ=None):
    """``channel`` (a ``grpc.Channel``) sending the bearer token with every call; as it is without one."""
    metadata = grpc_metadata(environ)
    if not metadata:
        return channel
    return grpc.intercept_channel(channel, _MetadataInterceptor(metadata))


def aio_interceptors(environ=None):
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)`` that send the bearer token."""
    metadata = grpc_metadata(environ)
    return [_aio_interceptor(kind, metadata) for kind in _AIO_KINDS] if metadata else []


def _with_metadata(details, metadata):
    return details._replace(metadata=[*(details.metadata or ()), *metadata])


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata to every call of a synchronous channel (the four interceptor kinds in one)."""

    def __init__(self, metadata):
        self.metadata = metadata

    def _call(self, continuation, details, request):
        return continuation(_with_metadata(details, self.metadata), request)

    intercept_unary_unary = intercept_unary_stream = _call
    intercept_stream_unary = intercept_stream_stream = _call


_AIO_KINDS = {
    "UnaryUnaryClientInterceptor": "intercept_unary_unary",
    "UnaryStreamClientInterceptor": "intercept_unary_stream",
    "StreamUnaryClientInterceptor": "intercept_stream_unary",
    "StreamStreamClientInterceptor": "intercept_stream_stream",
}


def _aio_interceptor(kind, metadata):
    async def intercept(self, continuation, details, request):
        return await continuation(_with_metadata(details, metadata), request)

    return type(f"Bearer{kind}", (getattr(aio, kind),), {_AIO_KINDS[kind]: intercept})()
