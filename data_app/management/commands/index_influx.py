"""``manage.py index_influx --measurement M --tag TAG [--database D]``: a session per tag value."""

from django.core.management.base import BaseCommand, CommandError

from data_app.management import indexing
from data_app.sources import influx, influx_index, registry


class Command(BaseCommand):
    help = (
        "Publish a session (config, schema mapping, data binding) for each value of a tag of an InfluxDB "
        "measurement: the identity is the filter \"TAG\"='value'. Nothing is copied: the influx source "
        "queries InfluxDB when asked. Re-running updates."
    )

    def add_arguments(self, parser):
        parser.add_argument("--measurement", default="", help="the measurement (default: RTA_INFLUX_MEASUREMENT)")
        parser.add_argument("--tag", required=True, help="the tag whose values are the identities")
        parser.add_argument("--database", default="", help="the database (default: RTA_INFLUX_DATABASE)")
        parser.add_argument(
            "--retention-policy", default="", help="the retention policy (default: RTA_INFLUX_RETENTION_POLICY)"
        )
        indexing.add_common_arguments(parser)

    def handle(self, *args, **options):
        source = next((s for s in registry.configured().values() if isinstance(s, influx.InfluxSource)), None)
        if source is None:
            raise CommandError("no InfluxDB source is configured: set RTA_INFLUX_URL")
        d = source.defaults
        target = influx.Target(
            options["database"] or d.database,
            options["retention_policy"] or d.retention_policy,
            options["measurement"] or d.measurement,
        )
        if not (target.database and target.measurement):
            raise CommandError("name the database and measurement (--database, --measurement or the settings)")
        try:
            found = influx_index.identities(source, target, options["tag"])
        except influx.InfluxDown as exc:
            raise CommandError(str(exc)) from None
        tag = options["tag"]

        def describe(identity):
            return influx_index.describe(source, target, identity, {tag: found[identity]})

        indexing.run(self, source.name, list(found), describe, options)
