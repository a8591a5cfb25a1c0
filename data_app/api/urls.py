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
    # A built-in data source as a data service (RTA_EXPOSE_DATA_SERVICE): base URL /rta/v2/sources/{source}.
    re_path(r"^sources/(?P<source>[^/]+)/?$", views.source_root, name="source-root"),
    re_path(
        r"^sources/(?P<source>[^/]+)/rta/v2/data/(?P<identity>[\s\S]+)/events$",
        views.data_service_events,
        name="source-events",
    ),
    re_path(
        r"^sources/(?P<source>[^/]+)/rta/v2/data/(?P<identity>[\s\S]+)/(?P<kind>timestamped|periodic|row)/(?P<channels>[^/]+)$",
        views.data_service_channel_data,
        name="source-data",
    ),
    # The data-service interface (RTA_EXPOSE_DATA_SERVICE): the data identity is one percent-encoded segment,
    # decoded before routing, so it may hold "/" (and newlines): the suffix decides, events first.
    re_path(r"^data/(?P<identity>[\s\S]+)/events$", views.data_service_events, name="data-service-events"),
    re_path(
        r"^data/(?P<identity>[\s\S]+)/(?P<kind>timestamped|periodic|row)/(?P<channels>[^/]+)$",
        views.data_service_channel_data,
        name="data-service-data",
    ),
    re_path(
        r"^data/(?P<identity>[\s\S]+?)/(?P<kind>[^/]+)(?:/(?P<channels>[^/]+))?$",  # lazy: the kind meant
        views.data_service_unknown_kind,
        name="data-service-unknown",
    ),
]
