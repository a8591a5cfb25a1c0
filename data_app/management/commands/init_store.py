"""``manage.py init_store``: prepare or upgrade the database and the chunk/config store, check them, exit.

Not needed to start (``make run`` on an existing bucket works as is): it is for
upgrades and for checking a deployment before servers start against it. It
applies the database migrations, then checks the store: with ``RTA_STORE=s3``
that the bucket answers and the credentials may write, list and delete under
``RTA_S3_PREFIX``, and writes the prefix's marker object (``.rta-store``); with
the file store that ``RTA_DATA_PATH`` is writable.
"""

import json
import os
import time
import uuid

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from data_app.store import objects, segments
from data_app.store.objects.s3 import MARKER_KEY, ObjectStoreUnavailable

STORE_FORMAT = 1  # of the object layout described in data_app.store.objects


class Command(BaseCommand):
    help = "Apply database migrations and prepare/check the chunk and config store (RTA_STORE), then exit."

    def add_arguments(self, parser):
        parser.add_argument("--skip-migrate", action="store_true", help="only check and prepare the store")

    def handle(self, *args, **options):
        if not options["skip_migrate"]:
            call_command("migrate", interactive=False, verbosity=max(options["verbosity"] - 1, 0))
            self.stdout.write("database: migrations applied")
        try:
            where = self._object_store() if objects.enabled() else self._file_store()
        except (ObjectStoreUnavailable, OSError) as exc:
            raise CommandError(f"store not usable: {getattr(exc, 'message', exc)}") from None
        self.stdout.write(self.style.SUCCESS(f"store ready: {where}"))

    def _object_store(self):
        store = objects.store()
        store.check_bucket()
        probe = f".init-probe-{uuid.uuid4().hex}"
        store.put(probe, b"ok")  # the credentials may write, read, list and delete here
        try:
            if store.get(probe) != b"ok" or not any(name == probe for name, _, _ in store.list(".init-probe-")):
                raise CommandError("store not usable: a probe object did not read back")
        finally:
            store.delete([probe])
        if store.exists(MARKER_KEY):
            marker = json.loads(store.get(MARKER_KEY))
            if marker.get("format", 0) > STORE_FORMAT:
                raise CommandError(f"the store has format {marker['format']}; this server knows {STORE_FORMAT}")
            self.stdout.write(f"marker {settings.RTA_S3_PREFIX}{MARKER_KEY}: format {marker.get('format')}")
        else:
            store.put(MARKER_KEY, json.dumps({"format": STORE_FORMAT, "created": int(time.time())}).encode())
            self.stdout.write(f"marker {settings.RTA_S3_PREFIX}{MARKER_KEY} written")
        return objects.location()

    def _file_store(self):
        root = segments.chunks_root()
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".init-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        os.unlink(probe)
        return f"{objects.location()}: {root}"
