"""An independent OpenID Connect issuer for the auth tests: discovery + JWKS over real HTTP, tokens signed
with ``cryptography`` keys, and the forged tokens a server must refuse.

    issuer = Issuer()            # serves http://127.0.0.1:<port>
    issuer.token("rta.read")     # an RS256 access token for audience "rta"
    issuer.close()
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "rta"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value):
    return b64url(json.dumps(value, separators=(",", ":")).encode())


class Issuer:
    def __init__(self, issuer_suffix=""):
        self.keys = {}  # kid -> private key
        self.published = []  # kids in the key set
        self.requests = []  # paths asked for, in order
        self.add_key("rsa-1", publish=True)
        self.add_key("ec-1", kind="EC", publish=True)
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                issuer.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.issuer, "jwks_uri": f"{issuer.url}/jwks", "token_endpoint": "unused"}
                elif self.path == "/jwks":
                    body = issuer.key_set()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.url + issuer_suffix
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="test-issuer")
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # --- keys -----------------------------------------------------------------------------------

    def add_key(self, kid, kind="RSA", publish=False):
        if kind == "RSA":
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        if publish:
            self.publish(kid)
        return self.keys[kid]

    def publish(self, kid):
        if kid not in self.published:
            self.published.append(kid)

    def key_set(self):
        keys = []
        for kid in self.published:
            public = self.keys[kid].public_key()
            if isinstance(public, rsa.RSAPublicKey):
                entry = RSAAlgorithm.to_jwk(public, as_dict=True)  # no "alg": RS256 and PS256 both fit
            else:
                entry = {**ECAlgorithm.to_jwk(public, as_dict=True), "alg": "ES256"}
            keys.append({**entry, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def public_pem(self, kid="rsa-1"):
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    # --- tokens ---------------------------------------------------------------------------------

    def claims(self, scopes="rta.read", lifetime=300, **overrides):
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": "tester", "iat": now, "nbf": now, "exp": now + lifetime}
        if scopes is not None:
            claims["scope"] = scopes
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, scopes="rta.read", kid="rsa-1", alg=None, headers=None, **overrides):
        """A token signed with key ``kid`` (RS256 for RSA, ES256 for EC unless ``alg``); ``overrides`` set claims
        (``None`` removes one)."""
        key = self.keys[kid]
        alg = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(self.claims(scopes, **overrides), key, algorithm=alg, headers={"kid": kid, **(headers or {})})

    def alg_none_token(self, scopes="rta.read rta.write"):
        return f"{_segment({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{_segment(self.claims(scopes))}."

    def hmac_confusion_token(self, scopes="rta.read rta.write", kid="rsa-1"):
        """HS256 "signed" with the issuer's public key PEM as the secret (the classic key-confusion forgery)."""
        signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_segment(self.claims(scopes))}"
        signature = hmac.new(self.public_pem(kid), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    def forged_token(self, scopes="rta.read rta.write"):
        """Names the published key but is signed with another: a bad signature."""
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(self.claims(scopes), forger, algorithm="RS256", headers={"kid": "rsa-1"})

    def bad_tokens(self):
        """name -> token every interface must answer 401 / UNAUTHENTICATED."""
        now = int(time.time())
        self.keys.setdefault("unpublished", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return {
            "expired": self.token("rta.read rta.write", exp=now - 600, iat=now - 1200, nbf=now - 1200),
            "not yet valid": self.token("rta.read rta.write", nbf=now + 600),
            "wrong audience": self.token("rta.read rta.write", aud="someone-else"),
            "wrong issuer": self.token("rta.read rta.write", iss="https://evil.example"),
            "no exp": self.token("rta.read rta.write", exp=None),
            "bad signature": self.forged_token(),
            "alg none": self.alg_none_token(),
            "hmac key confusion": self.hmac_confusion_token(),
            "unknown kid": self.token("rta.read rta.write", kid="unpublished"),
            "garbage": "not-a-jwt",
            "truncated": self.token("rta.read rta.write").rsplit(".", 1)[0],
        }


BAD_TOKEN_NAMES = [
    "expired",
    "not yet valid",
    "wrong audience",
    "wrong issuer",
    "no exp",
    "bad signature",
    "alg none",
    "hmac key confusion",
    "unknown kid",
    "garbage",
    "truncated",
]

# Authorization header values that are not a single bearer token.
MALFORMED_HEADERS = ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "Bearer a b", "bearer"]
