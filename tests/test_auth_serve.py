"""`manage.py serve` with TLS and auth on, end to end: HTTPS, WSS and gRPC over TLS with a self-signed
certificate made here, bearer tokens from an independent issuer; the plaintext HTTP port beside HTTPS.
"""

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rta.toolkit.api import session_service_pb2 as spb
from rta.toolkit.api import session_service_pb2_grpc as sgrpc
from websockets.sync.client import connect

from rta_site.auth.tls import _escape
from tests.auth_issuer import AUDIENCE, Issuer
from tests.conftest import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
SUBPROTOCOL = "mat.ocs.rta.stream-lz4"


def self_signed(directory):
    """A certificate for 127.0.0.1 / localhost and its key, as PEM files; returns (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rta test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class Server:
    def __init__(self, tmp, issuer):
        self.cert, key = self_signed(tmp)
        self.http, self.https, self.grpc = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
        env.update(
            RTA_DATABASE_URL=f"sqlite:///{tmp / 'rta.sqlite3'}",
            RTA_DATA_PATH=str(tmp / "data"),
            RTA_LOG_LEVEL="WARNING",
            RTA_AUTH_ENABLED="true",
            RTA_AUTH_AUTHORITY=issuer.url,
            RTA_AUTH_AUDIENCE=AUDIENCE,
            RTA_TLS_CERT_FILE=str(self.cert),
            RTA_TLS_KEY_FILE=str(key),
        )
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        args = [sys.executable, "manage.py", "serve", "--bind", "127.0.0.1", "--http-port", str(self.http)]
        args += ["--https-port", str(self.https), "--grpc-port", str(self.grpc)]
        self.log = tmp / "serve.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.ssl = ssl.create_default_context(cafile=str(self.cert))

    def wait_ready(self):
        wait_until_serving(
            self.process, f"https://127.0.0.1:{self.https}/health", self.log, ssl_context=self.ssl, any_status=True
        )

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def grpc_channel(self):
        credentials = grpc.ssl_channel_credentials(root_certificates=self.cert.read_bytes())
        return grpc.secure_channel(f"127.0.0.1:{self.grpc}", credentials)


@pytest.fixture(scope="module")
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, issuer):
    server = Server(tmp_path_factory.mktemp("tls"), issuer)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_https_serves_the_api_behind_bearer_tokens(server, issuer):
    base = f"https://127.0.0.1:{server.https}"
    info = httpx.get(f"{base}/rta/v2/info", verify=server.ssl, timeout=30)
    assert info.status_code == 200 and info.json()["requiresAuthentication"] is True
    anonymous = httpx.get(f"{base}/rta/v2/sessions", verify=server.ssl, timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert (
        httpx.get(f"{base}/rta/v2/sessions", headers=auth(issuer.hmac_confusion_token()), verify=server.ssl).status_code
        == 401
    )
    reply = httpx.get(f"{base}/rta/v2/sessions", headers=auth(issuer.token("rta.read")), verify=server.ssl, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"sessions": []}


def test_plain_http_still_listens_beside_https(server, issuer):
    reply = httpx.get(f"http://127.0.0.1:{server.http}/rta/v2/sessions", headers=auth(issuer.token()), timeout=30)
    assert reply.status_code == 200


def test_an_untrusted_certificate_fails_the_handshake(server):
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{server.https}/health", verify=ssl.create_default_context(), timeout=30)


def _ws(url, server, headers=None):
    return connect(
        url,
        subprotocols=[SUBPROTOCOL],
        ssl=server.ssl if url.startswith("wss") else None,
        additional_headers=headers or {},
        open_timeout=30,
        proxy=None,
    )


@pytest.mark.parametrize("scheme", ["wss", "ws"])
def test_websocket_handshakes_need_a_read_token(server, issuer, scheme):
    port = server.https if scheme == "wss" else server.http
    url = f"{scheme}://127.0.0.1:{port}/rta/v2/sessions/absent/stream"
    for headers, status in [(None, 401), (auth(issuer.forged_token()), 401), (auth(issuer.token("rta.write")), 403)]:
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            _ws(url, server, headers)
        assert info.value.response.status_code == status
    # A read token is upgraded; the session is absent, so the server closes normally without a message.
    with _ws(url, server, auth(issuer.token("rta.read"))) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosedOK):
            ws.recv(timeout=30)


def test_grpc_over_tls_with_tokens(server, issuer):
    with server.grpc_channel() as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = sgrpc.SessionStoreStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListSessions(spb.ListSessionsRequest(), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        write = (("authorization", f"Bearer {issuer.token('rta.read rta.write')}"),)
        stub.CreateOrUpdateSession(
            spb.CreateOrUpdateSessionRequest(
                identity="tls-session", create_if_not_exists=spb.CreateOrUpdateSessionRequest.CreateIfNotExists()
            ),
            metadata=write,
            timeout=30,
        )
        reply = stub.GetSession(spb.GetSessionRequest(identity="tls-session"), metadata=write, timeout=30)
        assert reply.identity == "tls-session"


def test_plaintext_grpc_is_refused_on_the_tls_port(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_endpoint_descriptions_escape_paths():
    assert _escape("C:\\certs\\a=b.pem") == "C\\:\\\\certs\\\\a\\=b.pem"
