"""Numpy sample arrays -> ``TimestampedData`` items, without per-sample Python work.

Items hold at most ``ITEM_SAMPLES`` (1,024) samples: well within the 10,000
an item may hold, and large enough that the per-item work of the writer and
the live tap stays small next to the samples (the chunk store re-encodes what
it stores as items of at most 128 samples, the size the spec asks for in
chunks). Deltas are stored with ``timestamp_deltas_scale`` set to their
greatest common divisor (10 ms telemetry stores deltas of 1), which keeps the
varints small.
Values are little-endian f64, the type of every generated channel.
"""
import numpy as np
from rta.model import data_pb2

ITEM_SAMPLES = 1024


def timestamped_items(channel, times, values, size=ITEM_SAMPLES):
    """Items for sorted int64 ``times`` and float64 ``values`` of one channel."""
    buffer = np.ascontiguousarray(values, dtype="<f8").tobytes()
    deltas = np.diff(times, prepend=times[:1])
    out = []
    for start in range(0, len(times), size):
        stop = min(start + size, len(times))
        piece = deltas[start + 1:stop]
        scale = int(np.gcd.reduce(piece)) if len(piece) else 0
        if scale > 1:
            piece = piece // scale
        out.append(data_pb2.TimestampedData(
            channel_id=channel,
            start_timestamp=int(times[start]),
            timestamp_deltas_scale=scale or 1,
            timestamp_deltas=[0, *piece.tolist()],
            buffer=buffer[start * 8:stop * 8],
        ))
    return out
