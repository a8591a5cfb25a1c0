"""Object storage for chunks and config blobs (``RTA_STORE=s3``).

The file store keeps today's layout (``data_app.store.segments``: append-only
segment files under ``RTA_DATA_PATH``); with ``RTA_STORE=s3`` chunks and config
blobs are immutable objects in ``RTA_S3_BUCKET`` under ``RTA_S3_PREFIX``:

- ``chunks/<h[:2]>/<h>/<time>-<token>.chk``: the chunks of one flush (or one
  compaction rewrite) of the data identity whose SHA-256 starts with ``h``,
  back to back; index rows name (key, offset, length), key relative to the prefix;
- ``retired/<key>``: an empty marker, written when compaction found ``<key>``
  named by no index row; the object is deleted once its marker is older than the
  grace period (readers holding older index rows are done by then);
- ``configs/<h[:2]>/<h>``: config blobs (``configs.ConfigBlobStorage``);
- ``.rta-store``: the marker ``manage.py init_store`` writes.

Nothing read from the bucket or the index is kept between requests: every
process sees what any other wrote as soon as its index rows are committed.
"""

from django.conf import settings


def enabled():
    """Whether chunks go to object storage (``RTA_STORE=s3``) rather than segment files."""
    return getattr(settings, "RTA_STORE", "file") == "s3"


def store():
    """The process's ``S3ObjectStore`` for the current settings (a client, not a cache of data)."""
    from data_app.store.objects.s3 import get_store

    return get_store()


def location():
    """Where this instance keeps chunk bytes, for people (admin, health): no credentials, no endpoint URL."""
    if enabled():
        return f"s3://{settings.RTA_S3_BUCKET}/{settings.RTA_S3_PREFIX}"
    return "file store (RTA_DATA_PATH/chunks)"
