"""``manage.py index_sqlite [--root FOLDER]``: publish a session for each SQLite file (the toolkit example's layout)."""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from data_app.management import indexing
from data_app.sources import registry, sql_probe, sqlite
from data_app.sources.indexed import IndexedData, IndexedField
from rta_core.errors import InvalidArgument, NotFound
from rta_core.timeutil import parse_timestamp

TIMESTAMP, IDENTIFIER = "$timestamp", "$identifier"  # the example's properties; other "$" keys are not details


class Command(BaseCommand):
    help = (
        "Publish a session (config, schema mapping, data binding) for each SQLite file under the SQLite root: "
        "fields of every sample table with the time column, intervals detected, identifier, timestamp and "
        "details from the file's properties table. Nothing is copied; re-running updates."
    )

    def add_arguments(self, parser):
        parser.add_argument("--root", default="", help="the folder to index: RTA_SQLITE_ROOT (default) or inside it")
        parser.add_argument("--pattern", default="*.sqlite", help="file names to index (default *.sqlite)")
        parser.add_argument(
            "--events-table",
            default="",
            help="a table of events in each file (its rows are events, not samples: mapping property events_table)",
        )
        indexing.add_common_arguments(parser)

    def handle(self, *args, **options):
        source = next((s for s in registry.configured().values() if isinstance(s, sqlite.SqliteSource)), None)
        if source is None:
            raise CommandError("no SQLite source is configured: set RTA_SQLITE_ROOT")
        root = os.path.realpath(source.root)
        folder = os.path.realpath(options["root"] or source.root)
        if os.path.commonpath([root, folder]) != root:
            raise CommandError("--root must be RTA_SQLITE_ROOT or a folder inside it")
        if not os.path.isdir(folder):
            raise CommandError("--root is not a folder")
        found = sorted(source.relative(str(p)) for p in _files(source, folder, options["pattern"]))
        events = options["events_table"]
        indexing.run(self, source.name, found, lambda identity: describe(source, identity, events), options)


def _files(source, folder, pattern):
    """Regular files matching ``pattern`` under ``folder``; symlinks are skipped (even those staying inside)."""
    out = []
    for path in Path(folder).rglob(pattern):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            source.resolve(source.relative(str(path)))
        except NotFound:  # under a symlinked folder leading out of the root
            continue
        out.append(path)
    return out


def describe(source, identity, events_table=""):
    """The ``IndexedData`` of one file, or None without samples (``events_table``: a table of events)."""
    fields, start, end = sql_probe.find(source, identity)
    fields = [f for f in fields if f.group.table != events_table]
    seen = set()  # a column name in two tables: the first table's is served (a field name maps one column)
    fields = [f for f in fields if not (f.name in seen or seen.add(f.name))]
    if not fields:
        return None
    properties = source.properties(source.resolve(identity))
    timestamp = None
    if properties.get(TIMESTAMP):
        try:
            timestamp = parse_timestamp(properties[TIMESTAMP]).ns
        except InvalidArgument:
            timestamp = None
    mapped = {"time_column": sqlite.DEFAULT_TIME_COLUMN, "time_unit": sqlite.DEFAULT_TIME_UNIT}
    if events_table and events_table in source.schema(source.resolve(identity)):
        mapped["events_table"] = events_table
    return IndexedData(
        fields=[IndexedField(f.name, "f64", f.interval, {"table": f.group.table}) for f in fields],
        start=start,
        end=end,
        identifier=properties.get(IDENTIFIER, "")[:200],
        timestamp=timestamp,
        details={k: v for k, v in properties.items() if not k.startswith("$")},
        properties=mapped,
    )
