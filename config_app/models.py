"""Config Service storage: one row per published configuration blob.

The bytes live in the default storage (``configs/`` under ``RTA_DATA_PATH``, or under
``RTA_S3_PREFIX`` in the bucket with ``RTA_STORE=s3``: docs/object-storage.md);
the row holds what is needed to find and serve them. Rows are never updated
after publication (configs are immutable): every rule is in
``config_app.services``.
"""

from django.db import models

JSON_CONTENT_TYPE = "application/vnd.mat.config+json"
FFC_CONTENT_TYPE = "application/vnd.mat.config+ffc"


class ContentType(models.TextChoices):
    JSON = JSON_CONTENT_TYPE, "JSON"
    FFC = FFC_CONTENT_TYPE, "FFC"


class Config(models.Model):
    # Identifiers are arbitrary text up to ``services.store.MAX_IDENTIFIER_LENGTH`` characters;
    # uniqueness and lookups go through the SHA-256 of the identifier, which also names the
    # stored file (a b-tree index on the text itself would not hold very long identifiers).
    identifier = models.TextField()
    identifier_hash = models.CharField(max_length=64, unique=True, editable=False)
    content_type = models.CharField(max_length=64, choices=ContentType.choices)
    size = models.BigIntegerField(help_text="Size of the stored bytes.")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the stored bytes (hex); the HTTP ETag.")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    storage_name = models.CharField(max_length=255, help_text="Name of the file in the default storage.")

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "config"

    def __str__(self):
        return self.identifier if len(self.identifier) <= 120 else self.identifier[:119] + "…"

    @property
    def is_json(self):
        return self.content_type == JSON_CONTENT_TYPE


class Dependency(models.Model):
    """An ATLAS Advanced Streams dependency: a JSON document (data format, ATLAS configuration...)
    published under a type and an id, which sessions name in their ``dependencies``.

    Documents are immutable once published; every rule is in ``config_app.services.dependencies``.
    """

    type = models.CharField(max_length=64)
    identifier = models.CharField(max_length=256, help_text="The id sessions use (often a content hash).")
    document = models.JSONField()
    sha256 = models.CharField(max_length=64, help_text="SHA-256 (hex) of the canonical JSON of the document.")
    size = models.IntegerField(help_text="Size of the canonical JSON in bytes.")
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "dependencies"
        constraints = [models.UniqueConstraint(fields=["type", "identifier"], name="dependency_unique")]

    def __str__(self):
        return f"{self.type}/{self.identifier}"


class SchemaMapping(models.Model):
    """How a store's schema maps onto channels and events, for one (data source, data identity):
    the same pair as a session's data binding. Every rule is in ``config_app.services.schema_mappings``.

    The pair is unique through ``key_hash`` (SHA-256 of both): a b-tree index cannot hold the pair
    itself when an identity of 1024 characters takes up to 4 KiB in UTF-8.
    """

    data_source = models.CharField(max_length=256)
    data_identity = models.TextField(help_text="Up to 1024 characters (like a data binding's identity).")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # {"properties": {...}, "field_mappings": [{...}, ...], "event_mappings": [{...}, ...]} (canonical form).
    mapping = models.JSONField(default=dict)
    field_count = models.IntegerField(default=0, help_text="Number of field mappings.")
    event_count = models.IntegerField(default=0, help_text="Number of event mappings.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["data_source", "data_identity", "id"]
        verbose_name = "schema mapping"
        indexes = [models.Index(fields=["data_source"], name="schemamapping_source")]

    def __str__(self):
        identity = self.data_identity if len(self.data_identity) <= 120 else self.data_identity[:119] + "…"
        return f"{self.data_source}:{identity}"
