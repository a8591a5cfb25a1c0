"""``manage.py load_demo``: demo sessions so a new installation shows real data (see ``data_app.demo``)."""

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_app import demo
from rta_core.errors import ServiceError


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class Command(BaseCommand):
    help = (
        "Load demo sessions (a simulated car: 100 Hz int16 periodic channels, timestamped f64 channels, events, "
        "laps as markers, a bound config) into the 'demo' folder. Existing demo sessions are skipped; "
        "--replace loads them again, --remove deletes them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sessions", type=int, default=3, help=f"how many sessions (1-{demo.MAX_SESSIONS}, default 3)"
        )
        parser.add_argument("--minutes", type=float, default=10.0, help="length of each session (default 10)")
        parser.add_argument("--replace", action="store_true", help="delete and reload demo sessions that exist")
        parser.add_argument("--remove", action="store_true", help="delete the demo sessions, their data and config")
        parser.add_argument(
            "--offer",
            action="store_true",
            help="only when the database has no sessions: ask (interactive terminal) or print a hint (otherwise)",
        )

    def handle(self, *args, **options):
        console = Console(file=getattr(self.stdout, "_out", self.stdout), highlight=False)
        try:
            if options["remove"]:
                return self._remove(console)
            if options["offer"] and not self._accepted(console, options):
                return
            self._load(console, options)
        except ServiceError as exc:
            raise CommandError(exc.message) from None

    def _accepted(self, console, options):
        from sessions_app.models import Session

        if Session.objects.exists():
            return False
        if not sys.stdin.isatty():
            console.print(
                "The database has no sessions yet. Run [bold]python manage.py load_demo[/] to load "
                f"{options['sessions']} demo sessions."
            )
            return False
        try:
            answer = console.input(
                f"The database has no sessions yet. Load {options['sessions']} demo sessions "
                f"({options['minutes']:g} minutes of simulated data each)? [Y/n] "
            )
        except EOFError:
            answer = "n"
        if answer.strip().lower() not in ("", "y", "yes"):
            console.print("Not loaded. [bold]python manage.py load_demo[/] loads them at any time.")
            return False
        return True

    def _load(self, console, options):
        sessions = options["sessions"]
        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("demo sessions", total=sessions * len(demo.STEPS))

            def report(index, step):
                progress.update(task, advance=1, description=f"session {index + 1}/{sessions}: {step}")

            result = demo.load_demo(
                sessions=sessions, minutes=options["minutes"], replace=options["replace"], report=report
            )
            progress.update(task, description="demo sessions")
        self._summary(console, result)

    def _summary(self, console, result):
        table = Table(title="Demo sessions", title_justify="left")
        for name, justify in (
            ("#", "right"),
            ("identifier", "left"),
            ("status", "left"),
            ("laps", "right"),
            ("best lap", "right"),
            ("samples", "right"),
            ("stored", "right"),
        ):
            table.add_column(name, justify=justify)
        for s in result.sessions:
            table.add_row(
                str(s.index + 1),
                s.identifier,
                s.status,
                str(s.laps),
                s.best_lap,
                f"{s.samples:,}",
                _size(s.stored_bytes),
            )
        console.print(table)
        loaded, replaced, skipped = (result.count(k) for k in ("loaded", "replaced", "skipped"))
        config_state = "published" if result.config_published else "already published"
        console.print(f"Config {result.config_identifier}: {config_state}.")
        if skipped and not (loaded or replaced):
            console.print(
                f"All {skipped} demo sessions were already loaded: nothing to do (--replace loads them again)."
            )
        else:
            parts = [
                f"{n} {label}"
                for n, label in ((loaded, "loaded"), (replaced, "replaced"), (skipped, "skipped (already loaded)"))
                if n
            ]
            console.print("Sessions: " + ", ".join(parts) + ".")
        port = settings.RTA_HTTP_PORT
        console.print(
            f"Browse them at http://localhost:{port}/admin/sessions_app/session/?folder={demo.FOLDER} "
            f"or point ATLAS at http://<this host>:{port}/rta/v2 (folder '{demo.FOLDER}')."
        )

    def _remove(self, console):
        result = demo.remove_demo()
        console.print(
            f"Removed {result.sessions} demo session(s) and their data"
            + ("; deleted the demo config" if result.config_deleted else "")
            + ("; deleted the demo folder" if result.folder_deleted else "")
            + "."
        )
