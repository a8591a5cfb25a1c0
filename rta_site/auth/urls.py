"""The embedded authority's endpoints, under ``/o/`` (404 unless RTA_AUTH_AUTHORITY=embedded: see the middleware).

django-oauth-toolkit's authorize, token, revoke, introspect and device endpoints and its
OpenID Connect discovery, key set, userinfo and logout; not its application-management
pages (clients are managed in the admin and by ``manage.py create_client``). Users sign in
for the authorization code flow on ``/o/login/``.
"""

from django.contrib.auth.views import LoginView
from django.urls import path
from oauth2_provider import urls as provider_urls

app_name = "oauth2_provider"

urlpatterns = [
    *provider_urls.base_urlpatterns,
    *provider_urls.oidc_urlpatterns,
    path(
        "login/",
        LoginView.as_view(
            template_name="admin/login.html", extra_context={"site_header": "RTA Server", "title": "Sign in"}
        ),
        name="login",
    ),
]
