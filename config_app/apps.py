from django.apps import AppConfig


class ConfigAppConfig(AppConfig):
    name = "config_app"
    verbose_name = "Configs"
    default_auto_field = "django.db.models.BigAutoField"
