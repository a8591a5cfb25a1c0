"""``manage.py compact_chunks``: reclaim the garbage merged chunks leave in segment files."""

import time

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_app.store import compaction


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024


class Command(BaseCommand):
    help = (
        "Rewrite chunk segment files whose garbage (bytes no index row points at) is at least "
        "--min-garbage-ratio of their size, keeping only live chunks; remove segments with nothing live. "
        "Safe while the server reads and writes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--identity", help="only the segments of this data identity")
        parser.add_argument(
            "--min-garbage-ratio",
            type=float,
            default=compaction.DEFAULT_MIN_GARBAGE_RATIO,
            help="compact a segment when garbage / size is at least this (0..1, default %(default)s)",
        )
        parser.add_argument("--dry-run", action="store_true", help="only report what would be compacted")
        parser.add_argument(
            "--grace-seconds",
            type=float,
            default=None,
            help="RTA_STORE=s3 only: delete an object this long after compaction first finds no index row naming "
            "it (reads that began before have finished by then; default 900, 0 = at once: no reader may be running)",
        )

    def handle(self, *args, **options):
        ratio = options["min_garbage_ratio"]
        if not 0 <= ratio <= 1:
            raise CommandError("--min-garbage-ratio must be between 0 and 1")
        if options["grace_seconds"] is not None and options["grace_seconds"] < 0:
            raise CommandError("--grace-seconds must not be negative")
        console = Console(file=self.stdout, highlight=False)
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("compacting", total=0)
            chosen = []

            def on_start(selected):
                chosen.extend(selected)
                progress.update(task, total=sum(s.live for s in selected) or 1)

            def on_progress(stats, nbytes):
                progress.update(task, advance=nbytes, description=f"compacting {stats.name}")

            try:
                summary = compaction.compact(
                    options["identity"],
                    ratio,
                    options["dry_run"],
                    on_start,
                    on_progress,
                    grace_seconds=options["grace_seconds"],
                )
            except compaction.CompactionBusy as exc:
                raise CommandError(exc.message) from None
        self._report(console, summary, chosen, options["dry_run"], time.perf_counter() - started)

    def _report(self, console, summary, chosen, dry_run, elapsed):
        if chosen:
            table = Table(title="segments " + ("to compact" if dry_run else "compacted"))
            for column in ("segment", "identity", "size", "live", "garbage"):
                table.add_column(
                    column, justify="right" if column in ("size", "live", "garbage") else "left", overflow="fold"
                )
            for s in chosen:
                table.add_row(
                    s.name,
                    s.identity or "(no chunks)",
                    _size(s.size),
                    _size(s.live),
                    f"{_size(s.garbage)} ({s.garbage_ratio:.0%})",
                )
            console.print(table)
        for name, reason in summary.skipped:
            console.print(f"skipped {name}: {reason}")
        if dry_run:
            garbage = sum(s.garbage for s in chosen)
            console.print(
                f"{summary.examined} segments examined, {len(chosen)} to compact, "
                f"{_size(garbage)} reclaimable (dry run: nothing changed)"
            )
            return
        console.print(
            f"{summary.examined} segments examined, {summary.compacted} compacted, {summary.removed} removed: "
            f"{_size(summary.bytes_before)} -> {_size(summary.bytes_after)}, "
            f"{_size(summary.reclaimed)} reclaimed in {elapsed:.2f} s"
        )
