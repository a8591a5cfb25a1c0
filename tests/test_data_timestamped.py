"""Timestamped runs as numpy arrays: wire encoding byte for byte, cutting, merging, validation (no database)."""

import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rta.model import data_pb2

from rta_core.errors import InvalidArgument
from rta_kit import items
from rta_kit.timestamped import TimestampedRun, timestamped_run
from rta_kit.varints import encode_varint, encode_varints, varint_lengths

S = 1_000_000_000
INT64_MAX = (1 << 63) - 1


def protobuf_list(channel_id, run, max_samples):
    """What protobuf serializes for ``run`` cut into items (the reference the store must match)."""
    message = data_pb2.TimestampedDataList()
    times, deltas, w = run.sample_times(), run.deltas.tolist(), run.width
    for i in range(0, run.samples, max_samples):
        j = min(run.samples, i + max_samples)
        piece = [0] + deltas[i + 1 : j]
        message.timestamped_data.add(
            channel_id=channel_id,
            start_timestamp=times[i],
            timestamp_deltas_scale=run.scale,
            timestamp_deltas=piece,
            buffer=run.data[i * w : j * w],
        )
    return message.SerializeToString()


def run_of(start, scale, deltas, width=8, channel_id=7):
    item = data_pb2.TimestampedData(
        channel_id=channel_id,
        start_timestamp=start,
        timestamp_deltas_scale=scale,
        timestamp_deltas=deltas,
        buffer=bytes(len(deltas) * width),
    )
    return timestamped_run(item)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.integers(0, 300), st.integers(0, INT64_MAX), st.integers(-(1 << 63), -1)), max_size=60)
)
def test_varints_match_protobuf(values):
    array = np.array(values, dtype=np.int64)
    expected = data_pb2.TimestampedData(timestamp_deltas=values).SerializeToString()
    packed = encode_varints(array)
    assert (b"\x22" + encode_varint(len(packed)) + packed if values else b"") == expected
    assert int(varint_lengths(array).sum()) == len(packed)


@settings(max_examples=150, deadline=None)
@given(
    channel_id=st.sampled_from([0, 1, 0x100, 0xFFFFFFFF]),
    start=st.sampled_from([0, 1, -5 * S, 1_700_000_000 * S, -1]),
    scale=st.sampled_from([1, 1000, 10**6, 3]),
    deltas=st.lists(st.one_of(st.integers(0, 200), st.integers(0, 1 << 40)), min_size=1, max_size=700),
    max_samples=st.sampled_from([1, 3, 128, 1024]),
    width=st.sampled_from([1, 2, 4, 8]),
)
def test_item_encoding_is_protobufs(channel_id, start, scale, deltas, max_samples, width):
    deltas = [0] + deltas[1:]
    rng = random.Random(len(deltas))
    buffer = bytes(rng.randrange(256) for _ in range(len(deltas) * width))
    item = data_pb2.TimestampedData(
        channel_id=channel_id,
        start_timestamp=start,
        timestamp_deltas_scale=scale,
        timestamp_deltas=deltas,
        buffer=buffer,
    )
    run = timestamped_run(item)
    encoded = run.list_entries(channel_id, max_samples)
    assert encoded == protobuf_list(channel_id, run, max_samples)
    decoded = data_pb2.TimestampedDataList.FromString(encoded).timestamped_data
    assert [t for it in decoded for t in items.times("timestamped", it)] == items.times("timestamped", item)
    bodies = run.item_bodies(channel_id, max_samples)
    assert [(first, last) for _body, first, last in bodies] == [
        (items.start_time("timestamped", it), items.end_time("timestamped", it)) for it in decoded
    ]


# Delta varints of one length (1, 2, 3 and 6 bytes): the items are encoded as one table.
BANDS = [(0, 127), (128, 16383), (16384, (1 << 21) - 1), (1 << 35, (1 << 42) - 1)]


@settings(max_examples=150, deadline=None)
@given(
    channel_id=st.sampled_from([0, 1, 0x100, 0xFFFFFFFF]),
    start=st.sampled_from([1, -(1 << 62), 1_700_000_000 * S]),  # never reaching 0: every item has its time field
    scale=st.sampled_from([1, 1000, 3]),
    band=st.sampled_from(BANDS),
    data=st.data(),
    max_samples=st.sampled_from([2, 3, 128]),
    width=st.sampled_from([1, 2, 4, 8]),
)
def test_items_of_equal_length_are_encoded_as_one_table_like_protobuf(
    channel_id, start, scale, band, data, max_samples, width
):
    n = data.draw(st.integers(2 * max_samples, 3 * max_samples + 5))
    first_deltas = data.draw(st.lists(st.integers(0, 1 << 20), min_size=n, max_size=n))  # items' first deltas: any
    deltas = [d if i % max_samples == 0 else data.draw(st.integers(*band)) for i, d in enumerate(first_deltas)]
    deltas[0] = 0
    buffer = bytes(random.Random(n).randrange(256) for _ in range(n * width))
    item = data_pb2.TimestampedData(
        channel_id=channel_id,
        start_timestamp=start,
        timestamp_deltas_scale=scale,
        timestamp_deltas=deltas,
        buffer=buffer,
    )
    run = timestamped_run(item)
    assert run._equal_entries(channel_id, max_samples) is not None  # the table path, not the loop
    assert run.list_entries(channel_id, max_samples) == protobuf_list(channel_id, run, max_samples)
    assert b"".join(run.list_entry_parts(channel_id, max_samples)) == protobuf_list(channel_id, run, max_samples)


def test_start_time_zero_inside_a_run_is_left_out_like_protobuf():
    run = run_of(-3, 1, [0, 1, 1, 1, 1, 1])  # the item starting at t = 0 has no start_timestamp field
    assert run.list_entries(2, 3) == protobuf_list(2, run, 3)


# Spans from far fewer windows than samples to far more (sparse samples: the other way of cutting).
@pytest.mark.parametrize("span", [50 * S, S // 5, S // 1000, 7])
def test_cut_matches_sample_by_sample_windows(span):
    rng = random.Random(4)
    deltas = [0] + [rng.randint(0, 400) for _ in range(2000)]
    run = run_of(-7 * S // 10, 10**6, deltas)
    times = run.sample_times()
    pieces = run.cut(span)
    assert [t for _w, p in pieces for t in p.sample_times()] == times
    assert b"".join(p.data for _w, p in pieces) == run.data
    for window, piece in pieces:
        assert all(window <= t < window + span for t in piece.sample_times())
    assert [w for w, _p in pieces] == sorted({t // span * span for t in times})


def test_absorb_joins_on_the_grid_only():
    a = run_of(0, 10, [0, 1, 1])  # 0, 10, 20
    assert a.absorb(run_of(50, 10, [0, 2]))  # 50, 70
    assert a.sample_times() == [0, 10, 20, 50, 70] and a.samples == 5
    assert not a.absorb(run_of(75, 10, [0]))  # off the 10 ns grid
    assert not a.absorb(run_of(70, 10, [0]))  # not after the last sample
    assert a.list_entries(1, 128) == protobuf_list(1, a, 128)


def test_from_times_uses_the_gcd_of_the_gaps():
    times = np.array([100, 130, 160, 250], dtype=np.int64)
    run = TimestampedRun.from_times(times, bytes(32), 8)
    assert (run.scale, run.deltas.tolist(), run.sample_times()) == (30, [0, 1, 1, 3], times.tolist())
    same = TimestampedRun.from_times(np.array([5, 5], dtype=np.int64), bytes(16), 8)
    assert same.scale == 1 and same.sample_times() == [5, 5]
    with pytest.raises(InvalidArgument, match="not in order"):
        TimestampedRun.from_times(np.array([5, 4], dtype=np.int64), bytes(16), 8)
    with pytest.raises(InvalidArgument, match="2\\^63"):
        TimestampedRun.from_times(np.array([-(1 << 63), INT64_MAX], dtype=np.int64), bytes(16), 8)


def test_overlapping_runs_merge_with_the_later_write_winning():
    first = TimestampedRun.from_times(np.array([10, 20, 30], dtype=np.int64), struct.pack("<3d", 1, 2, 3), 8)
    second = TimestampedRun.from_times(np.array([20, 25], dtype=np.int64), struct.pack("<2d", 9, 8), 8)
    payload, lo, hi, count = items.window_payload("timestamped", 3, [first, second])
    decoded = data_pb2.TimestampedDataList.FromString(payload).timestamped_data
    times = [t for it in decoded for t in items.times("timestamped", it)]
    values = struct.unpack(f"<{len(times)}d", b"".join(it.buffer for it in decoded))
    assert (times, values, lo, hi, count) == ([10, 20, 25, 30], (1, 9, 8, 3), 10, 30, 4)


@pytest.mark.parametrize(
    "start, scale, deltas, message",
    [
        (0, 1, [0, -1], "must not be negative"),
        (0, -1, [0, 1], "must not be negative"),
        (INT64_MAX - 5, 1, [0, 10], "overflow"),
        (0, 1 << 62, [0, 4], "overflow"),
        (-(1 << 63), 1, [0, INT64_MAX, 1], "2\\^63"),
        (0, 1, [0, INT64_MAX, INT64_MAX], "overflow"),
    ],
)
def test_invalid_items_are_rejected(start, scale, deltas, message):
    with pytest.raises(InvalidArgument, match=message):
        run_of(start, scale, deltas)


@pytest.mark.parametrize("deltas", [[0] + [1] * 999, [0] + [127, 0, 5] * 300, [0] * 300, [0]])
def test_one_byte_deltas_encode_like_protobuf(deltas):
    run = run_of(1_700_000_000 * S, 10**6, deltas)
    for max_samples in (1, 128, 1024):
        assert run.list_entries(3, max_samples) == protobuf_list(3, run, max_samples)
