"""Where a writer's flush goes: segment files (``RTA_STORE=file``) or new objects (``RTA_STORE=s3``).

``writing(identity)`` opens the transaction a flush indexes its chunks in and
yields an object with ``prefetch(rows)`` and ``read(file, offset, length)`` (stored
bytes to merge with) and ``append(blobs) -> (file, offset)`` (store the flush's chunks back to
back, durably). Concurrent writers of one identity are serialised until the
index commits: by the segment's ``flock`` on files, by a PostgreSQL advisory
lock on object storage (see ``objects.locks``).
"""

from contextlib import contextmanager

from django.db import transaction

from data_app.store import objects, segments


class _SegmentWriting:
    def __init__(self, appender, reader, name):
        self._appender, self._reader, self._name = appender, reader, name

    def prefetch(self, rows):
        pass  # local reads: nothing to overlap

    def read(self, name, offset, length):
        return self._reader.read(name, offset, length)

    def append(self, blobs):
        return self._name, self._appender.append(blobs)


@contextmanager
def writing(identity):
    if objects.enabled():
        from data_app.store.objects import chunks, locks

        with transaction.atomic():
            locks.lock_identity(identity)
            yield chunks.ObjectWriting(identity)
        return
    name = segments.segment_name(identity)
    # The segment lock is held until the index commits, so compaction (which takes it before
    # removing an append segment no row points at) never removes bytes about to be indexed.
    with segments.Appender(name) as appender, transaction.atomic(), segments.SegmentReader() as reader:
        yield _SegmentWriting(appender, reader, name)
