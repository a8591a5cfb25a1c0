"""The config store: publish, look up, read and delete immutable configuration blobs.

Every rule of the Config Service lives here; gRPC, REST and the admin only
translate. The rules:

- An identifier is any non-empty Unicode text of at most
  ``MAX_IDENTIFIER_LENGTH`` characters without NUL. It is never used as a file
  name: the stored file is named from the SHA-256 of its UTF-8 bytes
  (``configs/<h[:2]>/<h>``), so no identifier can reach outside the store.
- Content types are ``application/vnd.mat.config+json`` (validated by
  ``validation.validate_config_json`` before anything is published) and
  ``application/vnd.mat.config+ffc`` (opaque bytes). Empty configs are refused.
- Configs are immutable: publishing an identifier that exists is a no-op that
  succeeds and never overwrites. Of concurrent publications of one identifier
  exactly one wins: the database's unique index on the identifier hash decides,
  and only the winner moves its file into place.
- Bytes are written piece by piece to a temporary file under
  ``configs/.incoming/`` (hashing as they arrive), flushed to disk, then renamed
  into place in the same transaction that inserts the row. A storage without
  local paths (``RTA_STORE=s3``) gets the bytes from an in-memory buffer instead.
- Deleting removes the row, then the file once the transaction commits.
"""

import hashlib
import io
import logging
import os
import tempfile
import time
from contextlib import contextmanager

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from config_app.models import FFC_CONTENT_TYPE, JSON_CONTENT_TYPE, Config
from config_app.services.validation import parse_json, validate_config_json
from rta_core.errors import InvalidArgument, NotFound, TooLarge, excerpt
from rta_core.identities import validate_identity

log = logging.getLogger(__name__)

CONTENT_TYPES = (JSON_CONTENT_TYPE, FFC_CONTENT_TYPE)
MAX_IDENTIFIER_LENGTH = 4096
PIECE_SIZE = 1024 * 1024
STORAGE_PREFIX = "configs"
INCOMING = f"{STORAGE_PREFIX}/.incoming"


# --- arguments -------------------------------------------------------------------------------


def shown(identifier):
    """An identifier as quoted in messages (long ones cut to an excerpt)."""
    return excerpt(identifier)


def identifier_hash(identifier):
    """SHA-256 (hex) of a valid identifier; InvalidArgument when the identifier is not one."""
    if not isinstance(identifier, str) or not identifier:
        raise InvalidArgument("identifier must not be empty")
    validate_identity(identifier, "identifier", limit=MAX_IDENTIFIER_LENGTH)
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()


def check_content_type(content_type):
    """The content type in canonical (lower-case) form; InvalidArgument unless JSON or FFC config."""
    normalized = (content_type or "").strip().lower()
    if normalized not in CONTENT_TYPES:
        raise InvalidArgument(
            f"unsupported content type {excerpt(content_type)}: expected {' or '.join(CONTENT_TYPES)}"
        )
    return normalized


def storage_name_for(key):
    """Where the config whose identifier hashes to ``key`` is stored (the name is only ever a hash)."""
    return f"{STORAGE_PREFIX}/{key[:2]}/{key}"


# --- publishing ------------------------------------------------------------------------------


def put_config(identifier, content_type, data):
    """Publish ``data``; True if stored, False if the identifier was already published (a no-op)."""
    return put_config_stream(identifier, content_type, [bytes(data)])


def put_config_stream(identifier, content_type, pieces):
    """Publish a config arriving as an iterable of byte pieces; True if stored, False if it existed.

    The arguments are checked and the identifier looked up before any piece is
    read, so re-publishing does not consume the stream. JSON is validated once
    the whole document has arrived, before it is published. A config larger than
    ``RTA_CONFIG_MAX_BYTES`` is refused (TooLarge) as soon as its pieces pass it,
    and nothing of it is kept.
    """
    key = identifier_hash(identifier)
    content_type = check_content_type(content_type)
    if Config.objects.filter(identifier_hash=key).exists():
        return False
    with _incoming_file() as incoming:
        digest = hashlib.sha256()
        size, limit = 0, settings.RTA_CONFIG_MAX_BYTES
        for piece in pieces:
            if size + len(piece) > limit:
                raise TooLarge(f"config {shown(identifier)} is larger than RTA_CONFIG_MAX_BYTES ({limit} bytes)")
            incoming.write(piece)
            digest.update(piece)
            size += len(piece)
        if size == 0:
            raise InvalidArgument("config data is empty")
        incoming.flush()
        if isinstance(incoming, _LocalIncoming):  # renamed into place: durable first
            os.fsync(incoming.fileno())
        if content_type == JSON_CONTENT_TYPE:
            incoming.seek(0)
            validate_config_json(incoming.read())
        incoming.seek(0)
        return _commit(identifier, key, content_type, size, digest.hexdigest(), incoming)


class _LocalIncoming(File):
    """A temporary file inside the storage: ``Storage.save`` renames it into place."""

    def temporary_file_path(self):
        return self.file.name


@contextmanager
def _incoming_file():
    try:
        directory = default_storage.path(INCOMING)
    except NotImplementedError:
        # No local paths (object storage, RTA_STORE=s3): buffer in memory (nothing of a config on local
        # disk; at most RTA_CONFIG_MAX_BYTES), then let the storage upload it.
        with io.BytesIO() as handle:
            yield File(handle, name="config")
        return
    os.makedirs(directory, exist_ok=True)
    _sweep_stale(directory)
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix="put-", suffix=".part", delete=False)
    try:
        yield _LocalIncoming(handle)
    finally:
        handle.close()
        try:
            os.unlink(handle.name)  # gone already when it was moved into place
        except FileNotFoundError:
            pass


STALE_INCOMING_SECONDS = 24 * 3600


def _sweep_stale(directory):
    """Remove uploads a killed process left behind (a put removes its own file however it ends)."""
    cutoff = time.time() - STALE_INCOMING_SECONDS
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.name.endswith(".part") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass  # another put swept it first


def _commit(identifier, key, content_type, size, sha256, incoming):
    """Insert the row and move the file into place in one transaction; False if another put won."""
    base = storage_name_for(key)
    saved = None
    try:
        with transaction.atomic():
            # A concurrent insert of the same hash waits here until the first commits, then fails.
            config = Config.objects.create(
                identifier=identifier,
                identifier_hash=key,
                content_type=content_type,
                size=size,
                sha256=sha256,
                storage_name=base,
            )
            saved = default_storage.save(base, incoming)
            if saved != base:
                # A stale file (e.g. one being deleted) holds the name; keep the one the storage chose.
                config.storage_name = saved
                config.save(update_fields=["storage_name"])
    except IntegrityError:
        _discard(saved)
        return False
    except BaseException:
        _discard(saved)
        raise
    return True


def _discard(name):
    if not name:
        return
    try:
        default_storage.delete(name)
    except OSError:
        log.exception("could not delete config file %s", name)


# --- reading ---------------------------------------------------------------------------------


def has_config(identifier):
    return Config.objects.filter(identifier_hash=identifier_hash(identifier)).exists()


def find_config(identifier):
    """The Config row, or None."""
    return Config.objects.filter(identifier_hash=identifier_hash(identifier)).first()


def get_config(identifier):
    """The Config row; NotFound when absent."""
    config = find_config(identifier)
    if config is None:
        raise NotFound(f"config {shown(identifier)} not found")
    return config


def open_config(config):
    """The stored bytes of ``config`` as an open binary file (NotFound if deleted meanwhile)."""
    try:
        return default_storage.open(config.storage_name, "rb")
    except FileNotFoundError:
        raise NotFound(f"config {shown(config.identifier)} not found") from None


def read_config(identifier, max_size=None):
    """``(config, data)``; TooLarge when the config is over ``max_size`` bytes."""
    config = get_config(identifier)
    if max_size is not None and config.size > max_size:
        raise TooLarge(
            f"config {shown(identifier)} is {config.size} bytes, over the {max_size}-byte message limit: "
            "use GetConfigStream"
        )
    with open_config(config) as handle:
        return config, handle.read()


def iter_pieces(handle, piece_size=PIECE_SIZE):
    """The bytes of an open config file in pieces of at most ``piece_size``; closes the file."""
    try:
        while True:
            piece = handle.read(piece_size)
            if not piece:
                return
            yield piece
    finally:
        handle.close()


def read_document(config):
    """The parsed JSON of a JSON config (InvalidArgument for other content types)."""
    if config.content_type != JSON_CONTENT_TYPE:
        raise InvalidArgument(f"config {shown(config.identifier)} is {config.content_type}, not JSON")
    with open_config(config) as handle:
        return parse_json(handle.read())


# --- deleting --------------------------------------------------------------------------------


def delete_config(identifier):
    """Delete a config if present; True if one was deleted. Sessions bound to it lose it."""
    key = identifier_hash(identifier)
    with transaction.atomic():
        config = Config.objects.select_for_update().filter(identifier_hash=key).first()
        if config is None:
            return False
        _delete(config)
    return True


def delete_configs(configs):
    """Delete each of ``configs`` (rows or a queryset); the number deleted."""
    return sum(delete_config(config.identifier) for config in list(configs))


def _delete(config):
    name = config.storage_name
    config.delete()
    transaction.on_commit(lambda: _discard(name))
