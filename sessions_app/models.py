"""Session Service storage: sessions, folders, markers, bindings and refs.

Models are thin; every rule lives in ``sessions_app.services``.
"""

from django.db import models
from django.db.models import Q

ROOT_FOLDER = ""


class SessionState(models.IntegerChoices):
    """States with the numeric values used on the gRPC wire (closed states have bit 4 set)."""

    UNKNOWN = 0, "unknown"
    WAITING = 1, "waiting"
    OPEN = 2, "open"
    CLOSED = 4, "closed"
    TRUNCATED = 12, "truncated"
    FAILED = 28, "failed"
    ABANDONED = 44, "abandoned"

    # The two rules every app asks of a state, written once. Each takes a numeric value (as stored
    # and sent over gRPC) or a JSON name (as in session JSON and Advanced Streams).

    @classmethod
    def value_of(cls, state):
        """The numeric value of ``state`` (a value or a name); None when it names no state."""
        if isinstance(state, str):
            return _STATE_BY_NAME.get(state)
        return state if state in _STATE_NAMES else None

    @classmethod
    def is_closed(cls, state):
        """Whether ``state`` is a closed state: closed, truncated, failed, abandoned (bit 4 set, spec §3)."""
        value = cls.value_of(state)
        return value is not None and bool(value & cls.CLOSED)

    @classmethod
    def is_live(cls, state):
        """Whether ``state`` is live (waiting or open): streamed to WebSocket clients as it changes."""
        return cls.value_of(state) in (cls.WAITING, cls.OPEN)


# Looked up per call on hot paths (every live write asks is_live): built once, not per call.
_STATE_NAMES = {value: label for value, label in SessionState.choices}
_STATE_BY_NAME = {label: value for value, label in SessionState.choices}


class Folder(models.Model):
    """A virtual folder; the root has identity "" and no parent."""

    identity = models.CharField(max_length=1024, primary_key=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    label = models.CharField(max_length=1024, blank=True, default="")
    description = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["label", "identity"]

    def __str__(self):
        return self.label or self.identity or "(root)"


class Session(models.Model):
    identity = models.CharField(max_length=1024, primary_key=True)
    state = models.IntegerField(choices=SessionState.choices, default=SessionState.CLOSED)
    # The ISO 8601 text as given (zone offset and full precision) and the instant for sorting.
    timestamp_text = models.CharField(max_length=64)
    timestamp_ns = models.BigIntegerField(db_index=True)
    timestamp = models.DateTimeField(help_text="The timestamp as an instant (UTC), for filtering in the admin.")
    identifier = models.CharField(max_length=1024)
    start_time = models.BigIntegerField(null=True, blank=True)
    end_time = models.BigIntegerField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ext_details = models.JSONField(default=dict, blank=True)
    type = models.CharField(max_length=256, null=True, blank=True)
    quality = models.FloatField(null=True, blank=True)
    group = models.CharField(max_length=256, null=True, blank=True)
    version = models.CharField(max_length=256, null=True, blank=True)
    heartbeat = models.DateTimeField()
    last_sequence = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["-timestamp_ns", "identity"], name="session_ts_desc"),
            models.Index(fields=["identifier"], name="session_identifier"),
            models.Index(fields=["state"], name="session_state"),
            models.Index(fields=["type"], name="session_type"),
            models.Index(fields=["timestamp"], name="session_timestamp"),
        ]

    def __str__(self):
        return self.identifier or self.identity

    @property
    def state_name(self):
        return SessionState(self.state).label if self.state in SessionState.values else "unknown"


class FolderLink(models.Model):
    """A session's symbolic link into a folder."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="folder_links")
    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="session_links")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "folder"], name="folderlink_unique")]
        indexes = [models.Index(fields=["folder", "session"], name="folderlink_folder")]

    def __str__(self):
        return f"{self.session_id} in {self.folder_id or '(root)'}"


class Marker(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="markers")
    marker_id = models.CharField(max_length=1024)
    category = models.CharField(max_length=256, blank=True, default="")
    type = models.CharField(max_length=256, blank=True, default="")
    label = models.CharField(max_length=1024, blank=True, default="")
    description = models.TextField(null=True, blank=True)
    start_time = models.BigIntegerField(null=True, blank=True)
    end_time = models.BigIntegerField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["category", "start_time", "id"]
        constraints = [models.UniqueConstraint(fields=["session", "marker_id"], name="marker_unique")]

    def __str__(self):
        return self.label or self.marker_id


class ConfigBinding(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="config_bindings")
    identifier = models.CharField(max_length=1024)
    # uint32 on the wire (spec §7): past PositiveIntegerField's 2^31 - 1.
    channel_offset = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["session", "identifier"], name="configbinding_unique")]
        indexes = [models.Index(fields=["identifier"], name="configbinding_identifier")]

    def __str__(self):
        return f"{self.identifier} +{self.channel_offset}"


class DataBinding(models.Model):
    """Binds data of a (source, identity) onto a session, optionally clipped, shifted and re-mapped."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="data_bindings")
    source = models.CharField(max_length=256, blank=True, default="")
    identity = models.CharField(max_length=1024)
    time_ref = models.BigIntegerField(default=0)
    session_start_time = models.BigIntegerField(null=True, blank=True)
    session_end_time = models.BigIntegerField(null=True, blank=True)
    session_time_offset = models.BigIntegerField(default=0)
    # [{"first_data_channel": n, "first_session_channel": n, "last_session_channel": n}, ...]
    channel_bindings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "source", "identity", "time_ref"], name="databinding_unique")
        ]

    def __str__(self):
        return f"{self.source}:{self.identity}@{self.time_ref}"


class RefKind(models.TextChoices):
    ANCHOR = "anchor", "anchor"
    CHILD_OF = "child_of", "child of"
    ALTERNATE_OF = "alternate_of", "alternate of"


class SessionRef(models.Model):
    """Anchors a session publishes, and child_of / alternate_of refs pointing at other sessions' anchors."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="refs")
    kind = models.CharField(max_length=16, choices=RefKind.choices)
    uri = models.CharField(max_length=1024)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["session", "kind", "uri"], name="sessionref_unique")]
        indexes = [models.Index(fields=["kind", "uri"], name="sessionref_kind_uri")]

    def __str__(self):
        return f"{self.kind} {self.uri}"


def sub_session_refs():
    return Q(kind__in=[RefKind.CHILD_OF, RefKind.ALTERNATE_OF])
