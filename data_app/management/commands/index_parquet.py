"""``manage.py index_parquet [--root FOLDER]``: publish a session for each Parquet file or folder of them."""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from data_app.management import indexing
from data_app.sources import parquet, parquet_index, registry
from data_app.sources import parquet_files as files


class Command(BaseCommand):
    help = (
        "Publish a session (config, schema mapping, data binding) for each Parquet file under the Parquet "
        "root, and for each folder holding only Parquet files (its files in time order are one series). "
        "Nothing is copied: the parquet source reads the files when asked. Re-running updates."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--root", help="the folder to index: RTA_PARQUET_ROOT (default) or a folder inside it", default=""
        )
        parser.add_argument("--time-column", default="", help="the time column (default: a timestamp column, or time)")
        parser.add_argument(
            "--time-unit", default="", choices=["", *files.UNITS], help="unit of a numeric time column (default ns)"
        )
        indexing.add_common_arguments(parser)

    def handle(self, *args, **options):
        source = next((s for s in registry.configured().values() if isinstance(s, parquet.ParquetSource)), None)
        if source is None:
            raise CommandError("no Parquet source is configured: set RTA_PARQUET_ROOT")
        folder = str(Path(options["root"] or source.root).resolve())
        if folder != source.root and not folder.startswith(source.root.rstrip(os.sep) + os.sep):
            raise CommandError("--root must be RTA_PARQUET_ROOT or a folder inside it")
        if not os.path.isdir(folder):
            raise CommandError("--root is not a folder")
        found = parquet_index.identities(source.root, folder)
        time = {"time_column": options["time_column"], "time_unit": options["time_unit"]}

        def describe(identity):
            return parquet_index.describe(source, identity, {k: v for k, v in time.items() if v})

        indexing.run(self, source.name, found, describe, options)
