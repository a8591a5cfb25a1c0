"""Protobuf base-128 varints: one value, or a whole array at once with numpy.

The store writes some messages in wire format itself (a chunk's items differ
only in a few fields, and protobuf's Python API converts a repeated field one
element at a time); these encode exactly as protobuf does.
"""

import numpy as np

_UINT64 = (1 << 64) - 1


def _encoded(value):
    value &= _UINT64  # negative int64 values take ten bytes, as in protobuf
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths, counts, channels and scales are mostly small: their varints come from a table.
_SMALL = [_encoded(v) for v in range(1 << 14)]


def encode_varint(value):
    return _SMALL[value] if 0 <= value < 16384 else _encoded(value)


def encode_small_varints(values):
    """The varints of a few values in 0..16383 (a list), concatenated: table lookups, no numpy calls."""
    return b"".join([_SMALL[v] for v in values])


def _unsigned(values):
    # int64 -> uint64 as protobuf does (two's complement), without a copy.
    return values.view(np.uint64) if values.dtype == np.int64 else values.astype(np.uint64, copy=False)


def varint_lengths(values):
    """Bytes each value of an int64/uint64 array takes as a varint (negative: ten, as in protobuf)."""
    unsigned = _unsigned(values)
    lengths = np.ones(len(unsigned), dtype=np.int64)
    if len(unsigned):
        # One comparison per byte the largest value needs beyond the first (1D ops: numpy's fast loops).
        for k in range(1, max(1, -(-int(unsigned.max()).bit_length() // 7))):
            lengths += unsigned >= np.uint64(1 << (7 * k))
    return lengths


def encode_varints(values, lengths=None):
    """The varints of every value of an int64/uint64 array, concatenated (a packed repeated field's body)."""
    unsigned = _unsigned(values)
    if lengths is None:
        lengths = varint_lengths(unsigned)
    if not len(unsigned):
        return b""
    shortest, widest = int(lengths.min()), int(lengths.max())
    if widest == 1:
        return unsigned.astype(np.uint8).tobytes()
    # One row per value, one column per 7-bit group (continuation bit on all but a value's last
    # byte), filled column by column; the bytes in use are then taken row by row.
    table = np.empty((len(unsigned), widest), dtype=np.uint8)
    for k in range(widest):
        group = ((unsigned >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        if k < shortest - 1:
            group |= np.uint8(0x80)
        elif k < widest - 1:
            group |= (lengths > k + 1).astype(np.uint8) << np.uint8(7)
        table[:, k] = group
    if shortest == widest:
        return table.tobytes()
    used = np.empty(table.shape, dtype=bool)
    for k in range(widest):
        used[:, k] = lengths > k
    return table[used].tobytes()
