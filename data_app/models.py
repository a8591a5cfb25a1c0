"""The chunk index: one row per stored chunk (the bytes live in segment files)."""

from django.db import models


class ChunkKind(models.TextChoices):
    TIMESTAMPED = "timestamped"
    PERIODIC = "periodic"
    ROW = "row"
    EVENTS = "events"


class Chunk(models.Model):
    """A chunk of one channel (row data: one channel set; events: channel 0).

    ``window_start``/``span`` are the stable, time-aligned window the chunk
    covers (``window_start`` a multiple of ``span`` since the epoch);
    ``start_time``/``end_time`` the first/last sample time actually inside it.
    The bytes are ``packed_length`` bytes at ``offset`` in ``file`` (relative to
    RTA_DATA_PATH/chunks), a serialized data list, LZ4 block when
    ``compression`` is 1.
    """

    identity = models.CharField(max_length=1024)
    kind = models.CharField(max_length=12, choices=ChunkKind.choices)
    channel = models.BigIntegerField(help_text="Channel id; for row data a key of the channel set; 0 for events.")
    channel_ids = models.JSONField(
        default=list, help_text="Channels in the chunk (row data: the set, in buffer order)."
    )
    window_start = models.BigIntegerField()
    span = models.BigIntegerField()
    start_time = models.BigIntegerField()
    end_time = models.BigIntegerField()
    file = models.CharField(max_length=255)
    offset = models.BigIntegerField()
    packed_length = models.IntegerField()
    unpacked_length = models.IntegerField()
    sample_count = models.IntegerField()
    compression = models.SmallIntegerField(default=1)

    class Meta:
        indexes = [models.Index(fields=["identity", "kind", "channel", "start_time"], name="chunk_lookup")]
        constraints = [
            models.UniqueConstraint(fields=["identity", "kind", "channel", "window_start"], name="chunk_window_unique"),
        ]

    def __str__(self):
        return f"{self.identity} {self.kind} {self.channel:x} @{self.window_start}+{self.span}"
