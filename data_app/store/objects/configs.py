"""Config blobs in the bucket (``RTA_STORE=s3``): the default Django storage the config store writes through.

``config_app.services.store`` names blobs ``configs/<h[:2]>/<h>`` and never
reuses a name for other bytes, so a save simply (over)writes the object, and
reads stream the object's body. The settings select this storage when
``RTA_STORE=s3``; nothing of a config touches the local disk then.
"""

from django.core.files import File
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible

from data_app.store import objects
from data_app.store.objects.s3 import ObjectMissing


class _Body:
    """A streamed object body as a read-only file."""

    def __init__(self, body, size):
        self._body, self.size = body, size

    def read(self, size=-1):
        return self._body.read(None if size is None or size < 0 else size)

    def close(self):
        self._body.close()

    def readable(self):
        return True


@deconstructible
class ConfigBlobStorage(Storage):
    def _save(self, name, content):
        content.seek(0)
        objects.store().put(name, content.read())
        return name

    def get_available_name(self, name, max_length=None):
        return name  # names are hashes of immutable configs: never a different blob under one name

    def _open(self, name, mode="rb"):
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError("config blobs are immutable")
        store = objects.store()
        from data_app.store.objects.s3 import translated

        try:
            with translated("get"):
                answer = store.client.get_object(Bucket=store.bucket, Key=store.key(name))
        except ObjectMissing:
            raise FileNotFoundError(name) from None
        return File(_Body(answer["Body"], answer["ContentLength"]), name=name)

    def delete(self, name):
        objects.store().delete([name])

    def exists(self, name):
        return objects.store().exists(name)

    def size(self, name):
        try:
            return objects.store().size(name)
        except ObjectMissing:
            raise FileNotFoundError(name) from None

    def url(self, name):
        raise NotImplementedError("config blobs are served by the config service, not by URL")
