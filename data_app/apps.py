from django.apps import AppConfig


class DataAppConfig(AppConfig):
    name = "data_app"
    default_auto_field = "django.db.models.BigAutoField"
