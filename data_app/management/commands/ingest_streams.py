"""``manage.py ingest_streams``: ingest ATLAS Advanced Streams from Kafka (or a recorded file)."""

import os
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_app.ingest.ingestor import Ingestor
from data_app.ingest.runner import KafkaIngest, replay_file


class Command(BaseCommand):
    help = (
        "Consume an ATLAS Advanced Streams topic into RTA sessions, configs and data (until SIGINT/SIGTERM), "
        "or replay a recorded stream file (--file: one message per line, key TAB value)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bootstrap", help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")
        parser.add_argument("--topic", help="the Advanced Streams topic")
        parser.add_argument("--group", default=None, help="consumer group (default RTA_INGEST_GROUP, rta-ingest)")
        parser.add_argument(
            "--from-beginning",
            action="store_true",
            help="a group with no committed offsets starts at the earliest message (default: the latest)",
        )
        parser.add_argument(
            "--partitions",
            help="comma-separated partitions to read without joining the group's rebalancing "
            "(static assignment; offsets are still committed to the group)",
        )
        parser.add_argument("--file", help="replay this recorded stream file instead of consuming Kafka")
        parser.add_argument(
            "-X",
            dest="options",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="extra librdkafka consumer property (repeatable), e.g. -X security.protocol=SASL_SSL",
        )
        parser.add_argument(
            "--flush-seconds",
            type=float,
            default=None,
            help="seconds between flushes and offset commits (default RTA_INGEST_FLUSH_SECONDS)",
        )
        parser.add_argument(
            "--idle-stop",
            type=float,
            default=None,
            help="stop after this many seconds without a message (default: run until stopped)",
        )

    def handle(self, *args, **options):
        out = getattr(self.stdout, "_out", self.stdout)
        console = Console(file=out, highlight=False)
        if not console.is_terminal:
            console = Console(file=out, highlight=False, width=120)  # logs and pipes: don't wrap the summary
        if options["file"] is None and not (options["bootstrap"] and options["topic"]):
            raise CommandError("give --bootstrap and --topic (or --file)")
        kafka_options = {}
        for option in options["options"]:
            key, equals, value = option.partition("=")
            if not equals or not key:
                raise CommandError(f"-X {option!r} is not KEY=VALUE")
            kafka_options[key] = value
        partitions = None
        if options["partitions"]:
            try:
                partitions = [int(p) for p in options["partitions"].split(",") if p.strip()]
            except ValueError:
                raise CommandError(f"--partitions {options['partitions']!r} is not a list of numbers") from None
        options["partitions"] = partitions
        flush_seconds = options["flush_seconds"] or settings.RTA_INGEST_FLUSH_SECONDS
        ingestor = Ingestor(
            retry_seconds=settings.RTA_INGEST_RETRY_SECONDS,
            idle_seconds=settings.RTA_INGEST_IDLE_SECONDS,
            flush_bytes=settings.RTA_INGEST_FLUSH_BYTES,
        )
        stopping = threading.Event()
        previous = {}

        def request_stop(signum, frame):
            if stopping.is_set():
                raise KeyboardInterrupt  # a second signal: stop now, uncommitted messages will be read again
            stopping.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
        try:
            if options["file"] is not None:
                self._replay(console, ingestor, options["file"], flush_seconds, stopping)
                lag = None
            else:
                lag = self._consume(console, ingestor, options, kafka_options, flush_seconds, stopping)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self._summary(console, ingestor.stats, lag)

    # --- sources --------------------------------------------------------------------------------

    @staticmethod
    def _status(stats):
        seconds = max(stats.elapsed, 1e-9)
        problems = sum(stats.malformed.values())
        return (
            f"{stats.messages:,} messages ({stats.messages / seconds:,.0f}/s) · {len(stats.sessions):,} sessions · "
            f"{stats.samples:,} samples ({stats.samples / seconds:,.0f}/s)"
            + (f" · [yellow]{problems:,} malformed[/yellow]" if problems else "")
        )

    def _replay(self, console, ingestor, path, flush_seconds, stopping):
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(self._status(ingestor.stats), total=size)

            def update(position):
                progress.update(task, completed=position, description=self._status(ingestor.stats))

            replay_file(ingestor, path, flush_seconds=flush_seconds, stop=stopping.is_set, progress=update)

    def _consume(self, console, ingestor, options, kafka_options, flush_seconds, stopping):
        group = options["group"] or settings.RTA_INGEST_GROUP
        source = KafkaIngest(
            ingestor,
            options["bootstrap"],
            options["topic"],
            group,
            from_beginning=options["from_beginning"],
            flush_seconds=flush_seconds,
            options=kafka_options,
            partitions=options["partitions"],
        )
        console.print(
            f"consuming [bold]{options['topic']}[/bold] from {options['bootstrap']} as group {group!r} (Ctrl-C to stop)"
        )
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False
        ) as progress:
            task = progress.add_task(self._status(ingestor.stats), total=None)
            source.run(
                stop=stopping.is_set,
                progress=lambda: progress.update(task, description=self._status(ingestor.stats)),
                idle_stop=options["idle_stop"],
            )
            progress.update(task, description=self._status(ingestor.stats))
        return source.lag

    # --- summary ----------------------------------------------------------------------------------

    @staticmethod
    def _summary(console, stats, lag):
        seconds = max(stats.elapsed, 1e-9)
        table = Table(title="Ingest summary", title_justify="left", show_header=False)
        table.add_column("what")
        table.add_column("value", justify="right")
        rows = [
            ("messages", f"{stats.messages:,} ({stats.messages / seconds:,.0f}/s)"),
            ("by type", ", ".join(f"{k} {v:,}" for k, v in sorted(stats.by_type.items())) or "-"),
            (
                "sessions",
                f"{len(stats.sessions):,} ({stats.closed:,} closed, {stats.partial_streams:,} partial streams)",
            ),
            ("samples", f"{stats.samples:,} ({stats.samples / seconds:,.0f}/s)"),
            ("events, laps", f"{stats.events:,}, {stats.laps:,}"),
            ("duplicates dropped", f"{stats.duplicates:,}"),
            ("malformed", ", ".join(f"{k} {v:,}" for k, v in sorted(stats.malformed.items())) or "0"),
            ("skipped", ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items())) or "0"),
            ("flushes", f"{stats.flushes:,}"),
            ("elapsed", f"{seconds:,.1f} s"),
        ]
        if lag is not None and lag.samples:
            ordered = sorted(lag.samples)
            rows.append(("lag to durable (p50 / max)", f"{ordered[len(ordered) // 2]:,.0f} ms / {ordered[-1]:,.0f} ms"))
        for row in rows:
            table.add_row(*row)
        console.print(table)
