"""What every ``index_*`` command shares: a progress bar over the identities found, publishing, a summary.

An indexer command finds identities (files under a root, a table's keys, a
measurement's tag values), and for each says what is there (an
``publish.IndexedData``, or None: nothing to serve); ``run`` publishes each
(``data_app.services.publish``) and prints a table of what it did. A failing
identity is reported and skipped; the command fails at the end if any did.
"""

import logging
import time

from django.core.management.base import CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_app.services import publish
from rta_core.errors import ServiceError

log = logging.getLogger(__name__)
SHOWN_ROWS = 50  # rows of the summary table; the rest are counted


def add_common_arguments(parser):
    parser.add_argument(
        "--replace-mappings",
        action="store_true",
        help="store the generated schema mapping even where one is stored (default: keep stored mappings)",
    )
    parser.add_argument("--dry-run", action="store_true", help="only list what would be published")


def run(command, source, identities, describe, options):
    """Publish ``describe(identity)`` of each of ``identities`` (a list) under ``source``."""
    console = Console(file=command.stdout, highlight=False)
    started = time.perf_counter()
    rows, failures, skipped = [], 0, 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"indexing {source}", total=len(identities))
        for identity in identities:
            progress.update(task, description=f"indexing {_short(identity)}")
            try:
                data = describe(identity)
                if data is None or not data.fields:
                    skipped += 1
                    rows.append((identity, "skipped: no data", "", ""))
                elif options.get("dry_run"):
                    rows.append((identity, f"{len(data.fields)} fields", "", ""))
                else:
                    done = publish.publish(source, identity, data, options.get("replace_mappings", False))
                    mapping = "stored" if done.mapping_stored else "kept"
                    rows.append((identity, f"{len(data.fields)} fields", done.session, mapping))
            except Exception as exc:  # one identity's failure (a store error, bad data) must not stop the others
                failures += 1
                log.warning("indexing %s: %s failed", source, type(exc).__name__, exc_info=True)
                message = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
                rows.append((identity, f"failed: {message}", "", ""))
            progress.advance(task)
    _summary(console, source, rows, time.perf_counter() - started, options.get("dry_run"))
    published = len(rows) - failures - skipped
    console.print(
        f"{source}: {len(rows)} found, {published} {'to publish' if options.get('dry_run') else 'published'}, "
        f"{skipped} skipped, {failures} failed in {time.perf_counter() - started:.1f} s"
    )
    if failures:
        raise CommandError(f"{failures} of {len(rows)} identities could not be indexed")


def _summary(console, source, rows, elapsed, dry_run):
    if not rows:
        return
    table = Table(title=f"{source}: {'would publish' if dry_run else 'published'}")
    for column in ("data identity", "found", "session", "mapping"):
        table.add_column(column, overflow="fold")
    for row in rows[:SHOWN_ROWS]:
        table.add_row(*row)
    if len(rows) > SHOWN_ROWS:
        table.add_row(f"... and {len(rows) - SHOWN_ROWS} more", "", "", "")
    console.print(table)


def _short(identity, limit=60):
    return identity if len(identity) <= limit else "..." + identity[-(limit - 3) :]
