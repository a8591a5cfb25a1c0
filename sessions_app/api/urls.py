from django.urls import path, re_path

from sessions_app.api import views

urlpatterns = [
    path("sessions", views.SessionListView.as_view(), name="sessions"),
    # Identities may contain "/": the suffixed route first, then the session itself (any rest).
    re_path(
        r"^sessions/(?P<identity>.+)/data-bindings$",
        views.SessionDataBindingsView.as_view(),
        name="session-data-bindings",
    ),
    re_path(r"^sessions/(?P<identity>.+)$", views.SessionDetailView.as_view(), name="session"),
    path("session-folders/", views.RootSessionFoldersView.as_view(), name="session-folders-root"),
    path("session-folders/<path:parent>", views.SessionFoldersView.as_view(), name="session-folders"),
    path("session-metamodel", views.SessionMetamodelView.as_view(), name="session-metamodel"),
    path(
        "session-metamodel/properties",
        views.SessionMetamodelPropertiesView.as_view(),
        name="session-metamodel-properties",
    ),
    path("info", views.InfoView.as_view(), name="info"),
]
