"""Create, drop and list the expression indexes behind fast sorts by detail values."""

from django.core.management.base import BaseCommand, CommandError

from rta_core.errors import InvalidArgument
from sessions_app.services import sort_indexes


class Command(BaseCommand):
    help = (
        "Index detail keys for sorting (PostgreSQL): `index_details Driver extDetails.Car.Chassis` creates "
        "an ascending and a descending index per key; --drop removes them; no keys lists what exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("properties", nargs="*", help="detail keys: Key, details.Key or extDetails.Group.Key")
        parser.add_argument("--drop", action="store_true", help="drop the indexes of the named keys")

    def handle(self, *args, **options):
        names = options["properties"]
        try:
            if not names:
                rows = sort_indexes.list_indexes()
                for row in rows:
                    state = "" if row["valid"] else "  (INVALID: drop and create again)"
                    self.stdout.write(
                        f"{row['property']:40} {row['direction']:4} {row['bytes'] / 2**20:8.1f} MiB"
                        f"  {row['name']}{state}"
                    )
                self.stdout.write(f"{len(rows)} detail sort indexes")
                return
            if options["drop"]:
                done = sort_indexes.drop_indexes(names)
                self.stdout.write(f"dropped {len(done)} indexes")
                return
            for name in names:
                self.stdout.write(f"indexing {name} (asc and desc, concurrently: sessions stay writable)...")
                self.stdout.flush()
                made = sort_indexes.create_indexes([name])
                self.stdout.write(f"  {len(made)} created" if made else "  already indexed")
        except InvalidArgument as exc:
            raise CommandError(exc.message) from None
