"""``manage.py issue_token CLIENT``: print an access token of the embedded authority, for scripts."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Print an access token of the embedded authority for a client (its client_id or name), e.g. "
        "export RTA_AUTH_TOKEN=$(manage.py issue_token loader)."
    )

    def add_arguments(self, parser):
        parser.add_argument("client", help="client_id or name of the client")
        parser.add_argument("--scopes", default=None, help="space-separated scopes (default: all the client may have)")
        parser.add_argument("--seconds", type=int, default=None, help="life of the token (RTA_AUTH_TOKEN_SECONDS)")

    def handle(self, *args, client, scopes, seconds, **options):
        from oauth2_provider.models import get_application_model

        from rta_site.auth.embedded import issue_access_token

        if settings.RTA_AUTH_AUTHORITY != "embedded":
            raise CommandError("RTA_AUTH_AUTHORITY is not embedded: tokens come from your identity provider")
        Application = get_application_model()
        matches = list(Application.objects.filter(client_id=client)) or list(Application.objects.filter(name=client))
        if len(matches) != 1:
            raise CommandError(f"{len(matches)} clients have the id or name {client!r}; name one by its client_id")
        if seconds is not None and seconds <= 0:
            raise CommandError("--seconds must be positive")
        try:
            token = issue_access_token(matches[0], scopes.split() if scopes else None, seconds)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
