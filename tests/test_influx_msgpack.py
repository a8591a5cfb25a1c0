"""InfluxDB MessagePack answers decoded into columns (``data_app.sources.influx_msgpack``), against the rows
themselves: fixed-layout runs, rows with absent, integer and boolean values between them, answers split
anywhere, and answers that are not answers. (Real InfluxDB answers: ``test_source_influx.py``.)"""

import math
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_app.sources import influx_msgpack
from data_app.sources.influx_msgpack import read_msgpack
from data_app.sources.influx_query import QueryFailed

T0 = 1_700_000_000_000_000_000


def document(columns, rows, partial=True):
    series = {"name": "m", "columns": ["time", *columns], "values": rows, "partial": partial}
    return msgpack.packb({"results": [{"statement_id": 0, "series": [series], "partial": partial}]})


def split(body, cuts):
    at, pieces = 0, []
    for cut in sorted(set(cuts)):
        pieces.append(body[at:cut])
        at = cut
    return [*pieces, body[at:]]


def expected_column(rows, i):
    return [math.nan if r[i] is None else float(r[i]) for r in rows]


values = st.one_of(
    st.floats(allow_nan=False, width=64),
    st.floats(allow_nan=False, width=64),  # floats most of the time: runs of the fixed layout
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(
    width=st.sampled_from([1, 3, 14, 15, 16, 20]),  # 15+ fields: a 3-byte array header
    data=st.data(),
)
def test_rows_decode_to_their_columns_however_the_answer_is_cut(width, data):
    columns = [f"f{i}" for i in range(width)]
    documents = data.draw(st.integers(1, 3))
    rows, body = [], b""
    for d in range(documents):
        floats_only = data.draw(st.booleans())
        cell = st.floats(allow_nan=False, width=64) if floats_only else values
        n = data.draw(st.integers(0, 200))
        part = [
            [T0 + (len(rows) + i) * 1000, *data.draw(st.lists(cell, min_size=width, max_size=width))] for i in range(n)
        ]
        rows += part
        body += document(columns, part, partial=d < documents - 1)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(influx_msgpack, "RECHECK_ROWS", 3)  # back to whole runs soon after a row that was not
        times, decoded = read_msgpack(split(body, cuts), dict.fromkeys(columns, "float"))
    assert times.tolist() == [r[0] for r in rows]
    if not rows:
        return
    for i, name in enumerate(columns, 1):
        np.testing.assert_array_equal(decoded[name], np.array(expected_column(rows, i)))


def test_a_long_run_of_floats_is_decoded_whole_and_exactly():
    rng = np.random.default_rng(3)
    n = 50_000
    times = T0 + np.arange(n, dtype=np.int64) * 100_000
    a, b = rng.normal(size=n), rng.normal(size=n)
    # InfluxDB writes times as int64 (0xd3): built as it does, the run's layout is the one decoded whole.
    rows = b"".join(
        b"\x93\xd3" + struct.pack(">q", t) + b"\xcb" + struct.pack(">d", x) + b"\xcb" + struct.pack(">d", y)
        for t, x, y in zip(times.tolist(), a.tolist(), b.tolist(), strict=True)
    )
    # A document with an empty "values", the rows spliced in there behind an array32 header.
    series = {"name": "m", "columns": ["time", "a", "b"], "values": []}
    packed = msgpack.packb({"results": [{"statement_id": 0, "series": [series]}]})
    empty_values = b"\xa6values\x90"
    assert packed.count(empty_values) == 1
    body = packed.replace(empty_values, b"\xa6values\xdd" + n.to_bytes(4, "big") + rows)
    got_times, got = read_msgpack([body], {"a": "float", "b": "float"})
    np.testing.assert_array_equal(got_times, times)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)


def test_booleans_without_holes_are_bytes_and_integers_are_floats():
    body = document(["on", "count"], [[T0, True, 3], [T0 + 1, False, -(2**40)]])
    times, columns = read_msgpack([body], {"on": "boolean", "count": "integer"})
    assert columns["on"].dtype == np.uint8 and columns["on"].tolist() == [1, 0]
    assert columns["count"].dtype == np.float64 and columns["count"].tolist() == [3.0, float(-(2**40))]


def test_fields_not_asked_for_are_left_out_and_an_empty_answer_is_no_data():
    body = document(["a", "b"], [[T0, 1.0, 2.0]])
    assert list(read_msgpack([body], {"a": "float"})[1]) == ["a"]
    times, columns = read_msgpack([b""], {"a": "float"})
    assert len(times) == 0 and columns == {}
    empty = msgpack.packb({"results": [{"statement_id": 0}]})
    times, columns = read_msgpack([empty], {"a": "float"})
    assert len(times) == 0 and columns == {}


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"results": [{"statement_id": 0, "error": "database not found: x"}]}),
        msgpack.packb({"error": "bad query"}),
        document(["a"], [[T0, 1.0], [T0 + 1, 2.0]])[:-5],  # cut inside a row
        document(["a"], [[T0, 1.0]])[:12],  # cut inside the envelope
        b"\xc1\xc1\xc1 not msgpack",
        b"\x00garbage\x00" * 50,
        document(["a"], [[T0, 1.0, 2.0]]),  # a row wider than its columns
        msgpack.packb({"results": [{"series": [{"columns": ["a", "time"], "values": [[1.0, T0]]}]}]}),
        msgpack.packb({"results": [{"series": [{"columns": ["time", "a"], "values": [[T0, "text"]]}]}]}),
    ],
    ids=[
        "error",
        "top-level error",
        "truncated row",
        "truncated envelope",
        "not msgpack",
        "garbage",
        "wide row",
        "time not first",
        "string value",
    ],
)
def test_what_is_not_an_answer_fails_the_query(body):
    with pytest.raises(QueryFailed):
        read_msgpack([body], {"a": "float"})


def test_a_long_answer_in_small_pieces_drops_what_was_read_and_loses_nothing():
    """Several MiB in 64 KiB pieces, absent values now and then: the buffer drops what it has read (more than
    1 MiB behind) while runs and single rows alternate, and every value still lands in its column."""
    rng = np.random.default_rng(5)
    rows, body = [], b""
    for d in range(4):
        part = []
        for i in range(40_000):
            a, b = float(rng.normal()), float(rng.normal())
            if i % 997 == 0:
                a = None  # a row the numpy runs cannot take
            part.append([T0 + (len(rows) + i) * 100_000, a, b])
        rows += part
        body += document(["a", "b"], part, partial=d < 3)
    assert len(body) > 4 << 20
    pieces = [body[i : i + 65_536] for i in range(0, len(body), 65_536)]
    times, columns = read_msgpack(pieces, {"a": "float", "b": "float"})
    assert times.tolist() == [r[0] for r in rows]
    np.testing.assert_array_equal(columns["a"], np.array(expected_column(rows, 1)))
    np.testing.assert_array_equal(columns["b"], np.array(expected_column(rows, 2)))
