"""``manage.py trim_streams``: trim the live buffer's streams, once or every interval (spec §9)."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from data_app.live.buffers import get_buffer
from data_app.live.trimmer import trim_streams


class Command(BaseCommand):
    help = (
        "Trim every stream of the live buffer to RTA_STREAM_TRIM_LENGTH entries and drop stale streams; "
        "repeat every RTA_STREAM_TRIM_INTERVAL seconds unless --once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--length", type=int, default=None, help="entries kept per stream (RTA_STREAM_TRIM_LENGTH)")
        parser.add_argument(
            "--interval", type=float, default=None, help="seconds between passes (RTA_STREAM_TRIM_INTERVAL)"
        )

    def handle(self, *args, **options):
        console = Console()
        length = settings.RTA_STREAM_TRIM_LENGTH if options["length"] is None else options["length"]
        interval = settings.RTA_STREAM_TRIM_INTERVAL if options["interval"] is None else options["interval"]
        if length < 0 or interval <= 0:
            self.stderr.write("--length must be >= 0 and --interval > 0")
            raise SystemExit(2)
        where = settings.RTA_REDIS_URL or "the in-process buffer (RTA_REDIS_URL is unset: nothing to share)"
        console.print(f"trimming streams in {where} to {length} entries")
        try:
            while True:
                self._pass(console, length)
                if options["once"]:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            console.print("stopped")

    def _pass(self, console, length):
        buffer = get_buffer()
        names = buffer.stream_names()
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
        ) as progress:
            task = progress.add_task("streams", total=len(names))
            report = trim_streams(buffer, max_length=length, progress=lambda _name: progress.advance(task))
        console.print(
            f"{report.streams} streams: {report.trimmed_entries} entries trimmed, "
            f"{len(report.dropped_streams)} stale streams dropped in {time.perf_counter() - started:.2f} s"
        )
