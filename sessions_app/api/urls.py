from django.urls import path

from sessions_app.api import views

urlpatterns = [
    path("sessions", views.SessionListView.as_view(), name="sessions"),
    path("sessions/<str:identity>", views.SessionDetailView.as_view(), name="session"),
    path("sessions/<str:identity>/data-bindings", views.SessionDataBindingsView.as_view(), name="session-data-bindings"),
    path("session-folders/", views.RootSessionFoldersView.as_view(), name="session-folders-root"),
    path("session-folders/<path:parent>", views.SessionFoldersView.as_view(), name="session-folders"),
    path("session-metamodel", views.SessionMetamodelView.as_view(), name="session-metamodel"),
    path("session-metamodel/properties", views.SessionMetamodelPropertiesView.as_view(), name="session-metamodel-properties"),
    path("info", views.InfoView.as_view(), name="info"),
]
