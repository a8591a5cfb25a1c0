from django.urls import path, re_path

from data_app.api import views

urlpatterns = [
    path("sessions/<str:identity>/data/events", views.events, name="session-data-events"),
    re_path(
        r"^sessions/(?P<identity>[^/]+)/data/(?P<kind>timestamped|periodic|row)/(?P<channels>[^/]+)$",
        views.channel_data,
        name="session-data",
    ),
]
