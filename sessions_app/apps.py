from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        post_migrate.connect(_index_configured_details, sender=self)


def _index_configured_details(using="default", **kwargs):
    """After ``migrate``: the sort indexes RTA_INDEXED_DETAILS asks for (PostgreSQL only)."""
    from django.conf import settings
    from django.db import connections

    if not settings.RTA_INDEXED_DETAILS or connections[using].vendor != "postgresql":
        return
    from sessions_app.services import sort_indexes

    made = sort_indexes.create_indexes(settings.RTA_INDEXED_DETAILS)
    if made and kwargs.get("verbosity", 1):
        print(f"  created {len(made)} detail sort indexes for {', '.join(settings.RTA_INDEXED_DETAILS)}")
