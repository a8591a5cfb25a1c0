"""``manage.py load_dependencies FILE...``: publish Advanced Streams dependency documents."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.table import Table

from config_app.services import dependencies
from rta_core.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Publish Advanced Streams dependencies (data formats, ATLAS configurations) from JSON files. "
        'A file holds an envelope {"type": T, "id": ID, "document": {...}} (id optional: the content hash), '
        "a list of envelopes, or a bare document when --type is given (--id names it; default the content hash)."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--type", dest="dependency_type", help="type of bare documents, e.g. dataFormat")
        parser.add_argument("--id", dest="dependency_id", help="id of a bare document (one FILE only)")

    def handle(self, *args, files, dependency_type=None, dependency_id=None, **options):
        if dependency_id is not None and (dependency_type is None or len(files) != 1):
            raise CommandError("--id needs --type and exactly one FILE")
        console = Console(file=getattr(self.stdout, "_out", self.stdout), highlight=False)
        table = Table(title="Dependencies", title_justify="left")
        for column in ("file", "type", "id", "result"):
            table.add_column(column)
        failures = 0
        for name in files:
            try:
                entries = self._entries(Path(name), dependency_type, dependency_id)
            except (OSError, ServiceError) as exc:
                table.add_row(name, "", "", f"[red]{getattr(exc, 'message', exc)}[/red]")
                failures += 1
                continue
            for kind, ident, document in entries:
                try:
                    published, created = dependencies.publish(kind, document, ident)
                except ServiceError as exc:
                    table.add_row(name, str(kind), str(ident or ""), f"[red]{exc.message}[/red]")
                    failures += 1
                    continue
                table.add_row(name, kind, published, "published" if created else "already published")
        console.print(table)
        if failures:
            raise CommandError(f"{failures} document(s) could not be published")

    @staticmethod
    def _entries(path, dependency_type, dependency_id):
        document = dependencies.parse_document(path.read_bytes())
        if dependency_type is not None:
            return [(dependency_type, dependency_id, document)]
        envelopes = document if isinstance(document, list) else [document]
        out = []
        for index, envelope in enumerate(envelopes):
            if not isinstance(envelope, dict) or "type" not in envelope or "document" not in envelope:
                raise dependencies.InvalidArgument(
                    f'entry {index} is not an envelope {{"type", "id", "document"}} (or pass --type)'
                )
            out.append((envelope["type"], envelope.get("id"), envelope["document"]))
        return out
