"""The embedded authority (RTA_AUTH_AUTHORITY=embedded) through its real endpoints on a live server:
client credentials, authorization code + PKCE, JWT access tokens checked through the same discovery/JWKS
path as any issuer's; the manage.py commands; the secrets kept under the data path.
"""

import base64
import hashlib
import io
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from rta_core.access import Access
from rta_site.auth import keys
from rta_site.auth.embedded import create_client, issue_access_token
from rta_site.auth.middleware import BearerTokenMiddleware
from rta_site.auth.models import UserFolders
from rta_site.auth.provider import provider_settings

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
REDIRECT = "http://127.0.0.1:8765/callback"
FORMAT = {"feeds": {"": {"parameters": [{"identifier": "vCar:Chassis", "aggregates": "avg|max"}], "frequency": 100}}}


@pytest.fixture(scope="module")
def signing_key():
    return keys.new_rsa_private_key_pem()


@pytest.fixture
def embedded(live_server, signing_key):
    """Auth on with the embedded authority, its issuer the live server's ``/o``."""
    with override_settings(
        RTA_AUTH_ENABLED=True,
        RTA_AUTH_AUTHORITY="embedded",
        RTA_PUBLIC_URL=live_server.url,
        RTA_AUTH_FOLDERS_CLAIM="rta_folders",
        OAUTH2_PROVIDER=provider_settings(live_server.url, signing_key),
    ):
        yield live_server.url


def client_credentials(base, client_id, secret, scope=None):
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    return httpx.post(f"{base}/o/token/", data=form, auth=(client_id, secret), timeout=30)


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_discovery_and_key_set_name_the_issuer_and_the_token_key(embedded):
    discovery = httpx.get(f"{embedded}/o/.well-known/openid-configuration", timeout=30).json()
    assert discovery["issuer"] == f"{embedded}/o"
    assert discovery["token_endpoint"] == f"{embedded}/o/token/"
    assert {"rta.read", "rta.write", "openid"} <= set(discovery["scopes_supported"])
    assert "S256" in discovery["code_challenge_methods_supported"]
    key_set = httpx.get(discovery["jwks_uri"], timeout=30).json()
    application, secret = create_client("loader", "client-credentials", ["rta.read"])
    token = client_credentials(embedded, application.client_id, secret).json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] in [k["kid"] for k in key_set["keys"]]


def test_client_credentials_token_reads_and_writes_through_the_api(embedded, client):
    application, secret = create_client("loader", "client-credentials", ["rta.read", "rta.write"])
    answer = client_credentials(embedded, application.client_id, secret)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    token = body["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == f"{embedded}/o" and claims["aud"] == "rta"
    assert set(claims["scope"].split()) == {"rta.read", "rta.write"}
    assert claims["client_id"] == application.client_id and "rta_folders" not in claims
    assert claims["exp"] > claims["iat"]
    assert client.get("/rta/v2/sessions", **bearer(token)).status_code == 200
    response = client.put(
        "/api/dependencies/dataFormat/9a9627b7bc25",
        json.dumps(FORMAT),
        content_type="application/json",
        **bearer(token),
    )
    assert response.status_code == 201, response.content


def test_a_client_gets_only_the_scopes_it_was_given(embedded, client):
    application, secret = create_client("reader", "client-credentials", ["rta.read"])
    assert client_credentials(embedded, application.client_id, secret, "rta.write").status_code in (400, 401)
    token = client_credentials(embedded, application.client_id, secret).json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "rta.read"
    response = client.post(
        "/api/dependencies/dataFormat", json.dumps(FORMAT), content_type="application/json", **bearer(token)
    )
    assert response.status_code == 403


def test_wrong_client_secret_gets_no_token(embedded):
    application, _ = create_client("loader", "client-credentials", ["rta.read"])
    assert client_credentials(embedded, application.client_id, "wrong").status_code == 401


def test_client_folders_go_into_its_tokens(embedded):
    application, secret = create_client("partner", "client-credentials", ["rta.read"], folders=["Partner"])
    token = client_credentials(embedded, application.client_id, secret).json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["rta_folders"] == ["Partner"]
    assert _access(token).folders == ("Partner",)


def _access(token):
    seen = []
    from django.test import RequestFactory

    BearerTokenMiddleware(lambda request: seen.append(request.rta_access))(
        RequestFactory().get("/rta/v2/sessions", **bearer(token))
    )
    return seen[0]


def _pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize(client, application, challenge, state="s-1"):
    params = {
        "response_type": "code",
        "client_id": application.client_id,
        "redirect_uri": REDIRECT,
        "scope": "rta.read",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = client.get("/o/authorize/", params)
    assert page.status_code == 200, page.content  # the consent page
    answer = client.post("/o/authorize/", {**params, "allow": "Authorize"})
    assert answer.status_code == 302, answer.content
    location = urlsplit(answer["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def test_authorization_code_with_pkce_for_a_desktop_client(embedded, client):
    user = get_user_model().objects.create_user("ann", password="pw-ann")
    UserFolders.objects.create(user=user, folders=["Team A"])
    application, secret = create_client(
        "atlas", "authorization-code", ["rta.read"], redirect_uris=[REDIRECT], public=True
    )
    assert secret is None
    # Not signed in: the authorize endpoint sends the user to sign in first.
    verifier, challenge = _pkce()
    answer = client.get("/o/authorize/", {"response_type": "code", "client_id": application.client_id})
    assert answer.status_code == 302 and answer["Location"].startswith("/o/login/")
    assert client.get(answer["Location"]).status_code == 200  # the sign-in page
    client.force_login(user)
    code = _authorize(client, application, challenge)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": application.client_id,
        "code_verifier": verifier,
    }
    answer = httpx.post(f"{embedded}/o/token/", data=form, timeout=30)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(user.pk) and claims["scope"] == "rta.read" and claims["rta_folders"] == ["Team A"]
    assert _access(tokens["access_token"]) == Access(True, False, ("Team A",), str(user.pk))
    client.logout()
    assert client.get("/rta/v2/sessions", **bearer(tokens["access_token"])).status_code == 200
    # The refresh token is opaque: it never passes for an access token.
    assert tokens["refresh_token"].count(".") != 2
    assert client.get("/rta/v2/sessions", **bearer(tokens["refresh_token"])).status_code == 401


def test_authorization_code_without_the_pkce_verifier_is_refused(embedded, client):
    user = get_user_model().objects.create_user("bob", password="pw-bob")
    application, _ = create_client("web", "authorization-code", ["rta.read"], redirect_uris=[REDIRECT], public=True)
    client.force_login(user)
    _, challenge = _pkce()
    code = _authorize(client, application, challenge)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": application.client_id,
    }
    assert httpx.post(f"{embedded}/o/token/", data=form, timeout=30).status_code == 400
    # ... and a request without a challenge gets no code at all.
    page = client.get(
        "/o/authorize/",
        {"response_type": "code", "client_id": application.client_id, "redirect_uri": REDIRECT, "scope": "rta.read"},
    )
    assert page.status_code == 302 and "error=invalid_request" in page["Location"] and "code=" not in page["Location"]


def test_create_client_and_issue_token_commands(embedded, client):
    out = io.StringIO()
    call_command("create_client", "ingest", "--scopes", "rta.read rta.write", "--folder", "Plant", stdout=out)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    assert lines["client_id"] and lines["client_secret"] and lines["scopes"] == "rta.read rta.write"
    out = io.StringIO()
    call_command("issue_token", "ingest", "--scopes", "rta.read", stdout=out)
    token = out.getvalue().strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "rta.read" and claims["rta_folders"] == ["Plant"]
    assert client.get("/rta/v2/sessions", **bearer(token)).status_code == 200
    with pytest.raises(CommandError):
        call_command("issue_token", "nobody", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("create_client", "bad", "--scopes", "admin", stdout=io.StringIO())
    # The secret works against the real token endpoint too.
    assert client_credentials(embedded, lines["client_id"], lines["client_secret"]).status_code == 200


def test_issue_token_refuses_scopes_the_client_lacks(embedded):
    application, _ = create_client("reader", "client-credentials", ["rta.read"])
    with pytest.raises(ValueError):
        issue_access_token(application, ["rta.write"])


def test_issue_token_needs_the_embedded_authority():
    create_client("loader", "client-credentials", ["rta.read"])
    with pytest.raises(CommandError, match="embedded"):
        call_command("issue_token", "loader", stdout=io.StringIO())


# --- secrets kept under the data path ----------------------------------------------------------------------


def test_kept_secrets_are_made_once_and_private(tmp_path):
    path = tmp_path / "secrets" / "secret_key"
    first = keys.kept_secret(path, keys.new_secret_key)
    assert keys.kept_secret(path, lambda: "other") == first
    assert len(first) >= 50 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.kept_secret(tmp_path / "other", keys.new_secret_key) != first


def test_a_fresh_deployment_generates_its_secrets_and_passes_the_deploy_check(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    env.update(
        RTA_DATABASE_URL=f"sqlite:///{tmp_path / 'rta.sqlite3'}",
        RTA_DATA_PATH=str(tmp_path / "data"),
        RTA_AUTH_ENABLED="true",
        RTA_AUTH_AUTHORITY="embedded",
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Only what a deployment must decide itself (HSTS, redirecting to HTTPS, secure cookies: all need it
    # to serve HTTPS only); no fixed or weak secret key (W009), nothing about the authority (oauth2_provider.*).
    warnings = {line[4:].split(")")[0] for line in done.stderr.splitlines() if line.startswith("?: (")}
    assert warnings <= {"security.W004", "security.W008", "security.W012", "security.W016"}, done.stderr
    secret_dir = tmp_path / "data" / "secrets"
    for name in ("secret_key", "oidc-signing-key.pem"):
        assert stat.S_IMODE((secret_dir / name).stat().st_mode) == 0o600
    assert "PRIVATE KEY" in (secret_dir / "oidc-signing-key.pem").read_text()


def test_clients_are_managed_in_the_admin(client):
    admin = get_user_model().objects.create_superuser("root", password="pw-root")
    client.force_login(admin)
    application, _ = create_client("loader", "client-credentials", ["rta.read"], folders=["Plant"])
    page = client.get(f"/admin/oauth2_provider/application/{application.pk}/change/")
    assert page.status_code == 200 and b"Client access" in page.content and b"Plant" in page.content
    assert client.get("/admin/rta_auth/userfolders/").status_code == 200
    assert client.get("/admin/oauth2_provider/application/add/").status_code == 200
