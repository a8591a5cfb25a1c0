"""Fast paths of the kit against the general ones they shortcut, byte for byte (issue 14's benchmark work).

- ``windows._equal_windows``: timestamped windows of one sample count encoded
  as rows of one table, against the general per-shape encoder
  (``_timestamped_window_chunks`` with the table turned off), which
  ``test_adapter_kit`` checks against the store's own ``window_payload``;
- ``ChunkReader.feed`` with ``relayable``: the chunks it accepts come back as
  ``Run``s of framed bytes; relayed as a gateway relays them (the first
  header rewritten unless the chunk before is the one before there too), the
  stream must decode to the same chunks as one built from ``ReceivedChunk``s,
  whatever the pieces the body arrives in.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rta_kit import windows, wire
from rta_kit.chunk_reader import ChunkReader, Run
from rta_kit.chunking import series_chunks
from rta_kit.grid import ChunkGrid

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
S = 1_000_000_000


def _general(*args, **kwargs):
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(windows, "_TABLE_MIN_WINDOWS", 1 << 62)
        return series_chunks(*args, **kwargs)


def _same_chunks(got, want):
    assert [(c.start, c.end, c.samples, c.channel_ids) for c in got] == [
        (c.start, c.end, c.samples, c.channel_ids) for c in want
    ]
    assert [bytes(c.payload) for c in got] == [bytes(c.payload) for c in want]


@PROPERTY
@given(
    samples=st.integers(1, 6000),
    interval=st.sampled_from([10_000_000, 1_000_000, 7_000, 3]),
    jitter=st.sampled_from([0, 1, 1000, 4000, 40_000_000]),
    first=st.sampled_from([0, 1_700_000_000 * S, -5 * S, 123_456_789]),
    per_window=st.sampled_from([1, 2, 127, 128, 129, 256, 300, 1000]),
    data_type=st.sampled_from(["f64", "s16", "u8", "f32"]),
    channel=st.sampled_from([0, 1, 300, 70_000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_timestamped_windows_as_one_table_are_those_of_the_general_encoder(
    samples, interval, jitter, first, per_window, data_type, channel, seed
):
    rng = np.random.default_rng(seed)
    times = first + np.arange(samples, dtype=np.int64) * interval
    if jitter:
        times = np.unique(times + rng.integers(0, jitter, samples))
    values = rng.normal(size=len(times)) * 100
    grid = ChunkGrid(interval * per_window)
    got = series_chunks(channel, times, values, "timestamped", data_type=data_type, grid=grid)
    want = _general(channel, times, values, "timestamped", data_type=data_type, grid=grid)
    _same_chunks(got, want)


def test_regular_timestamped_series_take_the_table(monkeypatch):
    calls = []
    table = windows._equal_windows
    monkeypatch.setattr(windows, "_equal_windows", lambda *args: calls.append(args) or table(*args))
    times = 1_700_000_000 * S + 5 * S + np.arange(100_000, dtype=np.int64) * 10_000_000
    times += np.random.default_rng(1).integers(0, 4, len(times)) * 1000
    got = series_chunks(3, times, np.arange(len(times), dtype=np.float64), "timestamped", grid=ChunkGrid(10 * S))
    assert calls and sum(args[4] for args in calls) >= len(got) - 2  # all but the windows at either end
    _same_chunks(
        got,
        _general(3, times, np.arange(len(times), dtype=np.float64), "timestamped", grid=ChunkGrid(10 * S)),
    )


def _relayed(pieces, relayable):
    """The stream a relay sends: Runs as received (first header rewritten when needed), other chunks re-framed."""
    reader, framer, out = ChunkReader(), wire.ChunkStreamWriter(), []
    for piece in pieces:
        for item in reader.feed(piece, relayable):
            if type(item) is Run:
                if (framer.prev_start, framer.prev_duration, framer.prev_compression) == item.prev:
                    out.append(bytes(item.framed))
                else:
                    out.append(framer.header(*item.first) + bytes(item.framed[item.payload_at :]))
                framer.prev_start, framer.prev_duration, framer.prev_compression = item.last
            else:
                head = framer.header(
                    item.start_time,
                    item.end_time,
                    item.channel_ids,
                    item.compression,
                    item.unpacked_length,
                    len(item.packed),
                )
                out.append(head + bytes(item.packed))
    reader.close()
    return b"".join(out)


CHUNK = st.tuples(
    st.integers(-(1 << 62), 1 << 62),  # start
    st.integers(0, 1 << 40),  # duration
    st.integers(0, 5),  # channel
    st.sampled_from([wire.COMPRESSION_NONE, wire.COMPRESSION_LZ4]),
    st.binary(max_size=300),
)


@PROPERTY
@given(chunks=st.lists(CHUNK, max_size=25), cuts=st.lists(st.integers(0, 10_000), max_size=12), even=st.booleans())
def test_relayed_runs_decode_to_the_chunks_received(chunks, cuts, even):
    framer, body, want = wire.ChunkStreamWriter(), [], []
    for start, duration, channel, compression, payload in chunks:
        packed = wire.pack(payload, compression) if payload else b""
        body.append(framer.header(start, start + duration, [channel], compression, len(payload), len(packed)) + packed)
        want.append((start, start + duration, [channel], compression, len(payload), packed))
    data = b"".join(body)
    edges = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in zip(edges, edges[1:])]
    relayable = lambda start, end, ids: (ids[0] % 2 == 0) == even  # noqa: E731
    for accept in (None, relayable, lambda *_: True):
        got = wire.read_chunks(_relayed(pieces, accept))
        assert [(c.start, c.end, c.channel_ids, c.compression, c.unpacked_length, c.packed) for c in got] == want


def test_a_relay_run_spans_the_chunks_of_a_piece_without_copying_them():
    framer = wire.ChunkStreamWriter()
    data = b"".join(framer.header(i * S, i * S + 9, [1], 0, 3, 3) + b"abc" for i in range(10))
    items = ChunkReader().feed(data[:-2], lambda *_: True)
    assert [type(item) for item in items] == [Run] and items[0].count == 9
    assert items[0].framed.obj is data[:-2] or isinstance(items[0].framed, memoryview)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_a_stream_cut_inside_a_chunk_is_refused(size):
    framer = wire.ChunkStreamWriter()
    data = framer.header(0, 9, [1], 0, 5000, 5000) + bytes(5000)
    reader = ChunkReader()
    for a in range(0, len(data) - 1, size):
        reader.feed(data[a : min(a + size, len(data) - 1)], lambda *_: True)
    with pytest.raises(wire.ChunkFormatError):
        reader.close()
