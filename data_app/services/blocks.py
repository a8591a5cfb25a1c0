"""A chunked response body (spec §8) built a block at a time: the gateway's and a built-in source's."""

from data_app.store.reader import BLOCK_SIZE
from rta_kit import wire


class ResponseBlocks:
    """Frames the chunks of one response (one ``ChunkStreamWriter``) into blocks of about ``block_size`` bytes."""

    def __init__(self, block_size=BLOCK_SIZE):
        self.framer, self.block_size = wire.ChunkStreamWriter(), block_size
        self.pieces, self.size = [], 0

    def add(self, start, end, channel_ids, compression, unpacked_length, body):
        """Add one chunk; True when a block is ready to ``take``."""
        head = self.framer.header(start, end, channel_ids, compression, unpacked_length, len(body))
        self.pieces += (head, body)
        self.size += len(head) + len(body)
        return self.size >= self.block_size

    def add_run(self, run):
        """Add a ``chunk_reader.Run`` (sent as received, but for its first header when the chunk before it here
        is not the one before it there); True when a block is ready to ``take``."""
        framer = self.framer
        if (framer.prev_start, framer.prev_duration, framer.prev_compression) == run.prev:
            body = run.framed
        else:
            head = framer.header(*run.first)
            self.pieces.append(head)
            self.size += len(head)
            body = run.framed[run.payload_at :]
        self.pieces.append(body)
        self.size += len(body)
        framer.prev_start, framer.prev_duration, framer.prev_compression = run.last
        return self.size >= self.block_size

    def add_all(self, encoded):
        """Add chunks (``_encode``'s tuples), yielding each block they fill."""
        for fields in encoded:
            if self.add(*fields):
                yield self.take()

    def take(self):
        block = b"".join(self.pieces)
        self.pieces, self.size = [], 0
        return block
