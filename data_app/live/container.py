"""The LZ4 container of live bursts: one LZ4 *frame* per message.

Both the Redis buffer (``data`` field of a stream entry) and the WebSocket
sub-protocol ``mat.ocs.rta.stream-lz4`` carry a serialized ``StreamDataBurst``
compressed as exactly one frame of the standard LZ4 frame format
(https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md, magic number
``04 22 4D 18``). The frame is self-describing, which the protocol needs since
no length travels with the message: its header declares the block size
(64 KiB blocks here) and, as we write it, the uncompressed content size; its
end mark says where the data stops. Any LZ4 frame decoder reads it (python
``lz4.frame``, K4os.Compression.LZ4.Streams in .NET, ``lz4 -d``, lz4js...).
Readers accept frames with or without content size and checksums.
"""

import lz4.frame

# What a writer may put in one burst (spec §9: never over 1 MiB) ...
MAX_BURST_BYTES = 1024 * 1024
# ... and what a reader accepts from others before giving up on an entry (lenient, bounded).
MAX_READ_BYTES = 4 * 1024 * 1024


class ContainerError(ValueError):
    """Not one complete LZ4 frame, or more data than allowed."""


def compress(payload):
    """``payload`` as one LZ4 frame (fast mode, content size in the header, no checksums)."""
    return lz4.frame.compress(
        payload,
        compression_level=lz4.frame.COMPRESSIONLEVEL_MIN,
        block_size=lz4.frame.BLOCKSIZE_MAX64KB,
        content_checksum=False,
        store_size=True,
    )


def decompress(data, max_bytes=MAX_READ_BYTES):
    """The payload of one LZ4 frame; ``ContainerError`` if malformed, truncated, followed by junk or too big."""
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        payload = decompressor.decompress(data, max_length=max_bytes + 1)
    except RuntimeError as exc:  # lz4.frame reports corrupt input as RuntimeError
        raise ContainerError(f"not an LZ4 frame: {exc}") from None
    if len(payload) > max_bytes:
        raise ContainerError(f"LZ4 frame holds more than {max_bytes} bytes")
    if not decompressor.eof:
        raise ContainerError("truncated LZ4 frame")
    if decompressor.unused_data:
        raise ContainerError("data after the end of the LZ4 frame")
    return payload
