"""The ``OAUTH2_PROVIDER`` settings (django-oauth-toolkit) of the embedded authority.

Read by ``rta_site.settings`` before Django is set up, so this module imports no Django.
"""


def provider_settings(public_url, private_key_pem=None, token_seconds=3600):
    """The embedded authority's settings; without a key (another authority, or none) OpenID Connect is off."""
    return {
        "OIDC_ENABLED": private_key_pem is not None,
        "OIDC_RSA_PRIVATE_KEY": private_key_pem or "",
        "OIDC_ISS_ENDPOINT": f"{public_url.rstrip('/')}/o",
        "SCOPES_BACKEND_CLASS": "rta_site.auth.embedded.ClientScopes",
        # JWT access tokens; refresh tokens stay opaque (one must never pass for an access token).
        "ACCESS_TOKEN_GENERATOR": "rta_site.auth.embedded.jwt_access_token",
        "REFRESH_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
        "ACCESS_TOKEN_EXPIRE_SECONDS": token_seconds,
        "PKCE_REQUIRED": True,
        # RFC 9700 (OAuth 2.0 Security BCP) behaviour, all on.
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        # Desktop clients (ATLAS) redirect to a loopback http:// address (RFC 8252 section 7.3).
        "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    }
