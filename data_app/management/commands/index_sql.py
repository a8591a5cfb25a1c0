"""``manage.py index_sql --source NAME --table T --key-column K --time-column C [--time-unit U]``.

Publishes a session for each distinct key of a PostgreSQL / TimescaleDB table
(the data identity is the key's text): the table's numeric columns as fields,
intervals detected, the time range from the rows.
"""

from django.core.management.base import BaseCommand, CommandError

from data_app.management import indexing
from data_app.sources import registry, sql, sql_probe
from data_app.sources.indexed import IndexedData, IndexedField
from data_app.sources.mappings import Mapping


class Command(BaseCommand):
    help = (
        "Publish a session (config, schema mapping, data binding) for each distinct key of a table of an "
        "RTA_SQL_SOURCES database. Nothing is copied: the source reads the rows when asked. Re-running updates."
    )

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True, help="a source named in RTA_SQL_SOURCES")
        parser.add_argument("--table", required=True, help="the table (name or schema.name)")
        parser.add_argument("--key-column", required=True, help="the column whose values are the sessions")
        parser.add_argument("--time-column", required=True, help="the time column (integer or timestamp)")
        parser.add_argument(
            "--time-unit",
            default="",
            choices=["", *sql.UNITS, "timestamp"],
            help="unit of an integer time column (default: timestamp for timestamp columns, else ns)",
        )
        parser.add_argument(
            "--events-table",
            default="",
            help="a table of events with the same key and time columns (mapping property events_table)",
        )
        indexing.add_common_arguments(parser)

    def handle(self, *args, **options):
        source = registry.configured().get(options["source"])
        if not isinstance(source, sql.SqlSource):
            raise CommandError(f"{options['source']!r} is not a source of RTA_SQL_SOURCES")
        properties = {
            "table": options["table"],
            "key_column": options["key_column"],
            "time_column": options["time_column"],
        }
        if options["time_unit"]:
            properties["time_unit"] = options["time_unit"]
        mapping = Mapping(properties, (), (), False)
        table = source.table(options["table"])
        if table is None:
            raise CommandError("no such table in that database")
        for column in (options["key_column"], options["time_column"]):
            if column not in table.columns:
                raise CommandError(f"the table has no column {column!r}")
        if sql.layout_of(properties, table) is None:
            raise CommandError("the time column must be an integer (with --time-unit) or a timestamp column")
        if options["events_table"]:
            events = {**properties, "table": options["events_table"]}
            if sql.layout_of(events, source.table(options["events_table"])) is None:
                raise CommandError("the events table needs the key column and the time column (same type)")
            properties["events_table"] = options["events_table"]
        keys = source.distinct_keys(options["table"], options["key_column"])

        def describe(identity):
            fields, start, end = sql_probe.find(source, identity, mapping)
            if not fields:
                return None
            return IndexedData(
                fields=[IndexedField(f.name, "f64", f.interval, {}, table.type_of(f.name)) for f in fields],
                start=start,
                end=end,
                identifier=identity[:200],
                details={"Table": options["table"], options["key_column"]: identity},
                properties=dict(properties),
            )

        indexing.run(self, source.name, keys, describe, options)
