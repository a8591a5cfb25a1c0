from django.apps import AppConfig


class AuthConfig(AppConfig):
    name = "rta_site.auth"
    label = "rta_auth"
    verbose_name = "Authentication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from rta_site.auth import authenticate  # noqa: F401  (connects its setting_changed receiver)
