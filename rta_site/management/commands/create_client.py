"""``manage.py create_client NAME``: a client of the embedded authority (RTA_AUTH_AUTHORITY=embedded)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create a client of the embedded authority and print its id and secret (shown only now). "
        "Loaders and ingest pipelines use --grant client-credentials; desktop and web clients "
        "--grant authorization-code (with PKCE) and --redirect-uri."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--grant", choices=["client-credentials", "authorization-code"], default="client-credentials"
        )
        parser.add_argument(
            "--scopes", default=None, help="space-separated scopes the client may have (default: the read scope)"
        )
        parser.add_argument(
            "--folder",
            dest="folders",
            action="append",
            default=None,
            help="limit the client's tokens to this folder's sub-tree (repeatable; with RTA_AUTH_FOLDERS_CLAIM)",
        )
        parser.add_argument(
            "--no-folders",
            action="store_true",
            help="limit the client's tokens to no folder at all (it sees nothing)",
        )
        parser.add_argument("--redirect-uri", dest="redirect_uris", action="append", default=[])
        parser.add_argument("--public", action="store_true", help="a public client (no secret; PKCE only)")

    def handle(self, *args, name, grant, scopes, folders, no_folders, redirect_uris, public, **options):
        from rta_site.auth.embedded import create_client

        if settings.RTA_AUTH_AUTHORITY != "embedded":
            self.stderr.write(
                "warning: RTA_AUTH_AUTHORITY is not embedded; this server will not accept the client's tokens"
            )
        if no_folders and folders:
            raise CommandError("--folder and --no-folders exclude each other")
        scope_list = (scopes or settings.RTA_AUTH_READ_SCOPE).split()
        try:
            application, secret = create_client(
                name,
                grant,
                scope_list,
                folders=[] if no_folders else folders,
                redirect_uris=redirect_uris,
                public=public,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"client_id: {application.client_id}")
        if secret is not None:
            self.stdout.write(f"client_secret: {secret}")
        self.stdout.write(f"scopes: {' '.join(scope_list)}")
        self.stdout.write(f"token endpoint: {settings.RTA_PUBLIC_URL}/o/token/")
