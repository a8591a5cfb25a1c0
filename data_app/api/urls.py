from django.urls import re_path

from data_app.api import views

# Identities may contain "/" (the routes match the suffix first; Django decodes %2F too).
urlpatterns = [
    re_path(r"^sessions/(?P<identity>.+)/data/events$", views.events, name="session-data-events"),
    re_path(
        r"^sessions/(?P<identity>.+)/data/(?P<kind>timestamped|periodic|row)/(?P<channels>[^/]+)$",
        views.channel_data,
        name="session-data",
    ),
    # Anything else under /data/ is not a session identity ending in "/data/...": say what is wrong.
    re_path(
        r"^sessions/(?P<identity>.+)/data/(?P<kind>[^/]+)(?:/(?P<channels>[^/]+))?$",
        views.unknown_kind,
        name="session-data-unknown",
    ),
]
