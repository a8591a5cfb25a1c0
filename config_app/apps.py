from django.apps import AppConfig


class ConfigAppConfig(AppConfig):
    name = "config_app"
    default_auto_field = "django.db.models.BigAutoField"
