from django.apps import AppConfig


class RtaSiteConfig(AppConfig):
    name = "rta_site"
