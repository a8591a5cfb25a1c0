"""The embedded authority (``RTA_AUTH_AUTHORITY=embedded``): django-oauth-toolkit with OpenID Connect.

For small deployments without an identity provider; its settings are ``rta_site.auth.provider``. The issuer is
``{RTA_PUBLIC_URL}/o``; its discovery document and key set are served there
and the server checks its own tokens through them, like any issuer's.

django-oauth-toolkit issues opaque access tokens; here they are JWTs instead
(``jwt_access_token``), signed RS256 with the OpenID Connect key (the ``kid``
is the key's thumbprint, as the published key set names it) and carrying
``iss``, ``aud`` (``RTA_AUTH_AUDIENCE``), ``sub``, ``client_id``, ``scope``,
``iat``/``nbf``/``exp`` and, when ``RTA_AUTH_FOLDERS_CLAIM`` is set and a folder
restriction applies, that claim. Refresh tokens stay opaque (a refresh token
must never pass for an access token). Which scopes a client may have, and its
folders, are kept beside the client (``ClientAccess``); a user's folders
(``UserFolders``) take precedence in tokens issued for that user.
"""

import functools
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from oauth2_provider.scopes import BaseScopes

OPENID_SCOPE = "openid"


def scope_descriptions():
    return {
        OPENID_SCOPE: "Sign in (OpenID Connect)",
        settings.RTA_AUTH_READ_SCOPE: "Read sessions, configs and data",
        settings.RTA_AUTH_WRITE_SCOPE: "Create, change and delete sessions, configs and data",
    }


class ClientScopes(BaseScopes):
    """A client may have the scopes its ``ClientAccess`` lists (the read scope when it has none)."""

    def get_all_scopes(self):
        return scope_descriptions()

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        if application is None:  # the discovery document: every scope
            return list(scope_descriptions())
        return [OPENID_SCOPE, *_client_scopes(application)]

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        return _client_scopes(application)


def _client_scopes(application):
    from rta_site.auth.models import ClientAccess

    known = scope_descriptions()
    granted = None
    if application is not None:
        granted = ClientAccess.objects.filter(application=application).values_list("scopes", flat=True).first()
    if granted is None:
        return [settings.RTA_AUTH_READ_SCOPE]
    return [s for s in granted.split() if s in known and s != OPENID_SCOPE]


def token_folders(application, user):
    """The folders a token for ``application`` (and ``user``) is limited to, or ``None``."""
    from rta_site.auth.models import ClientAccess, UserFolders

    if user is not None and getattr(user, "pk", None) is not None:
        folders = UserFolders.objects.filter(user=user).values_list("folders", flat=True).first()
        if folders is not None:
            return list(folders)
    if application is not None:
        row = ClientAccess.objects.filter(application=application).values_list("folders", flat=True).first()
        if row is not None:
            return list(row)
    return None


def jwt_access_token(request, refresh_token=False):
    """Access token generator (``ACCESS_TOKEN_GENERATOR``): a signed JWT for an oauthlib request."""
    from oauth2_provider.settings import oauth2_settings

    application = request.client
    user = request.user if getattr(request.user, "is_authenticated", False) else None
    now = int(time.time())
    claims = {
        "iss": oauth2_settings.oidc_issuer(request),
        "aud": settings.RTA_AUTH_AUDIENCE,
        "sub": str(user.pk) if user is not None else application.client_id,
        "client_id": application.client_id,
        "scope": " ".join(s for s in (request.scopes or ()) if s != OPENID_SCOPE),
        "iat": now,
        "nbf": now,
        "exp": now + int(request.expires_in),
        "jti": uuid.uuid4().hex,
    }
    if settings.RTA_AUTH_FOLDERS_CLAIM:
        folders = token_folders(application, user)
        if folders is not None:
            claims[settings.RTA_AUTH_FOLDERS_CLAIM] = folders
    pem = oauth2_settings.OIDC_RSA_PRIVATE_KEY
    key, kid = _signing_key(pem)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


@functools.lru_cache(maxsize=4)
def _signing_key(pem):
    """The loaded private key and the ``kid`` the key set publishes for it (its JWK thumbprint)."""
    from oauth2_provider.utils import jwk_from_pem

    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    return key, jwk_from_pem(pem).thumbprint()


GRANTS = {
    "client-credentials": "client-credentials",
    "authorization-code": "authorization-code",
}


def create_client(name, grant, scopes, folders=None, redirect_uris=(), public=False, user=None):
    """A new client of the embedded authority and its secret (``None`` for a public client).

    The secret is shown only now: it is stored hashed.
    """
    from oauth2_provider.generators import generate_client_secret
    from oauth2_provider.models import get_application_model

    from rta_site.auth.models import ClientAccess

    Application = get_application_model()
    if grant not in GRANTS:
        raise ValueError(f"grant must be one of {', '.join(GRANTS)}")
    known = scope_descriptions()
    unknown = [s for s in scopes if s not in known or s == OPENID_SCOPE]
    if unknown or not scopes:
        raise ValueError(
            f"scopes must be among {settings.RTA_AUTH_READ_SCOPE} {settings.RTA_AUTH_WRITE_SCOPE}; got {' '.join(scopes)}"
        )
    if grant == "authorization-code" and not redirect_uris:
        raise ValueError("an authorization-code client needs at least one redirect URI")
    if grant == "client-credentials" and public:
        raise ValueError("a client-credentials client must be confidential (it has a secret)")
    secret = None if public else generate_client_secret()
    application = Application(
        name=name,
        user=user,
        client_type=Application.CLIENT_PUBLIC if public else Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=GRANTS[grant],
        redirect_uris=" ".join(redirect_uris),
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=False,
    )
    if secret is not None:
        application.client_secret = secret
    application.save()
    ClientAccess.objects.create(
        application=application, scopes=" ".join(scopes), folders=list(folders) if folders is not None else None
    )
    return application, secret


class _TokenRequest:
    """What ``jwt_access_token`` reads of an oauthlib request, for tokens issued without one."""

    def __init__(self, application, scopes, seconds, user=None):
        self.client, self.client_id, self.scopes, self.expires_in = application, application.client_id, scopes, seconds
        self.user = user
        self.headers = {}


def issue_access_token(application, scopes=None, seconds=None, user=None):
    """A signed access token for ``application`` (scripts: ``manage.py issue_token``), recorded like any other."""
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, set_token_value

    allowed = _client_scopes(application)
    scopes = list(scopes) if scopes else allowed
    refused = [s for s in scopes if s not in allowed]
    if refused:
        raise ValueError(f"client {application.name or application.client_id} may not have {' '.join(refused)}")
    seconds = seconds or settings.RTA_AUTH_TOKEN_SECONDS
    token = jwt_access_token(_TokenRequest(application, scopes, seconds, user))
    record = get_access_token_model()(
        user=user,
        application=application,
        expires=timezone.now() + timedelta(seconds=seconds),
        scope=" ".join(scopes),
    )
    set_token_value(record, token)
    record.save()
    return token
