"""Routes of the Advanced Streams dependency service, included under ``/api/``."""

from django.urls import path

from config_app.api import dependencies

urlpatterns = [
    path("dependencies/<str:dependency_type>", dependencies.DependencyCollectionView.as_view(), name="dependencies"),
    path(
        "dependencies/<str:dependency_type>/<str:dependency_id>",
        dependencies.DependencyView.as_view(),
        name="dependency",
    ),
]
