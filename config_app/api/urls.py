from django.urls import path, register_converter

from config_app.api import views


class IdentifierConverter:
    """Like Django's ``path`` converter (any characters, '/' included) but also line breaks:
    config identifiers are arbitrary text, and ``path``'s ``.+`` stops at a newline."""

    regex = r"[\s\S]+"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(IdentifierConverter, "config_identifier")

urlpatterns = [
    # Clients percent-encode reserved characters; Django matches the decoded path.
    path("configs/<config_identifier:identifier>", views.ConfigView.as_view(), name="config"),
]
