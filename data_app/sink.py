"""The one entry point for writing session data, whoever the writer is.

gRPC ``DataWriter``, the Advanced Streams ingest and ``load_demo`` all write
through a ``DataSink``: it buffers into the chunk store (``ChunkWriter``) and
is where live publishing (the Redis buffer of open sessions) hooks in, so
every writer gets both without repeating the rule.
"""
from data_app.store.writer import ChunkWriter


class DataSink:
    """Items for one data identity: ``add`` buffers, ``flush`` makes durable, ``discard`` drops."""

    def __init__(self, identity, **writer_options):
        self.identity = identity
        self.store = ChunkWriter(identity, **writer_options)

    def add(self, kind, item):
        """Validate and buffer one item (``InvalidArgument`` leaves nothing buffered)."""
        self.store.add(kind, item)

    def flush(self):
        """Returns once everything added so far is fsynced, indexed and readable."""
        return self.store.flush()

    def discard(self):
        self.store.discard()

    @property
    def buffered_bytes(self):
        return self.store.buffered_bytes
