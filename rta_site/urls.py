from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from rta_site.monitoring import views as monitoring

urlpatterns = [
    path("", monitoring.index, name="index"),
    path("health", monitoring.health, name="health"),
    path("metrics", monitoring.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("rta/v2/schema", SpectacularAPIView.as_view(), name="schema"),
    path("rta/v2/", include("data_app.api.urls")),
    path("rta/v2/", include("sessions_app.api.urls")),
    path("rta/v2/", include("config_app.api.urls")),
    path("api/", include("config_app.api.dependency_urls")),
    # The embedded authority (RTA_AUTH_AUTHORITY=embedded; 404 otherwise): rta_site.auth.
    path("o/", include("rta_site.auth.urls")),
]

handler404 = "rta_site.monitoring.views.not_found"
handler500 = "rta_site.monitoring.views.server_error"
