from django.apps import AppConfig


class DataAppConfig(AppConfig):
    name = "data_app"
    verbose_name = "Data"
    default_auto_field = "django.db.models.BigAutoField"
