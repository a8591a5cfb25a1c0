"""Stable chunk boundaries as a property (spec §8).

For random request bounds and channel expressions, every chunk served is
byte-identical (times, channels, compression, lengths, payload) to the same
chunk in the unbounded response, in the same order, and every chunk of the
unbounded response that overlaps the request is served: the request is only
ever rounded outwards to whole chunks. Checked for a session's own data (the
fast path), for a session whose binding shifts, clips and re-maps (decoded
chunks), and for bindings that overlap on the same channels (merged windows).
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rta.model import data_pb2

from data_app.store.writer import ChunkWriter
from rta_kit import wire
from sessions_app.services.updates import create_or_update_session
from tests.test_data_bindings import KINDS, T0, S, bind, binding, write_identity

pytestmark = pytest.mark.django_db

SESSIONS = ("own", "shifted", "overlapping")
CHANNELS = {"own": range(0, 0x10), "shifted": range(0x100, 0x110), "overlapping": range(0, 0x10)}


def write_dense(identity):
    """Timestamped data, rows and events dense enough for several chunks each (spans of a few seconds)."""
    writer = ChunkWriter(identity)
    deltas = [0] + [700 + (i * 13) % 150 for i in range(1, 26_000)]  # µs: ~20 s
    writer.add(
        "timestamped",
        data_pb2.TimestampedData(
            channel_id=9,
            start_timestamp=T0 + 11,
            timestamp_deltas_scale=1000,
            timestamp_deltas=deltas,
            buffer=struct.pack(f"<{len(deltas)}d", *range(len(deltas))),
        ),
    )
    for i in range(2000):
        t = T0 + i * (S // 100) + 7
        writer.add("row", data_pb2.RowData(channel_ids=[7, 8], timestamp=t, buffer=struct.pack("<25d", *range(25))))
        if i % 2 == 0:
            writer.add(
                "events",
                data_pb2.Event(event_definition_id=i, timestamp=t, status_text="x" * 20, raw_data=[float(i)] * 50),
            )
    writer.flush()


@pytest.fixture
def sessions():
    for identity in ("own", "car-b"):
        write_dense(identity)  # first: a channel's span is chosen from its first flush
        write_identity(identity)
    create_or_update_session("own")
    bind(
        "shifted",
        binding("own", offset=-3 * S - 12_345, start=T0 + 2 * S + 1, end=T0 + 14 * S, maps=[(0, 0x100, 0x10F)]),
    )
    bind(
        "overlapping",
        binding("own", maps=[(0, 0, 0xF)], time_ref=1),
        binding("car-b", offset=S // 3, start=T0 + 4 * S, maps=[(1, 1, 3), (7, 7, 9)], time_ref=2),
    )


def fetch(api, session, kind, channels, start=None, end=None):
    url = f"/rta/v2/sessions/{session}/data/{kind}" + ("" if kind == "events" else f"/{channels}")
    params = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    response = api.get(url, params)
    assert response.status_code == 200, response.content
    chunks = wire.read_chunks(b"".join(response.streaming_content))
    return [(c.start, c.end, tuple(c.channel_ids), c.compression, c.unpacked_length, c.packed) for c in chunks]


def expression(session, picks):
    channels = sorted({CHANNELS[session][i % len(CHANNELS[session])] for i in picks})
    return ",".join(f"{c:X}" for c in channels)


times = st.one_of(st.none(), st.integers(min_value=T0 - 5 * S, max_value=T0 + 25 * S))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    session=st.sampled_from(SESSIONS),
    kind=st.sampled_from(KINDS),
    start=times,
    end=times,
    picks=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=4),
)
def test_chunks_are_the_same_whatever_the_request_bounds(api, sessions, session, kind, start, end, picks):
    if start is not None and end is not None and start > end:
        start, end = end, start
    channels = expression(session, picks)
    whole = _unbounded(api, session, kind, channels)
    part = fetch(api, session, kind, channels, start, end)
    assert set(part) <= set(whole), "every chunk served is one of the unbounded response's chunks"
    assert part == [c for c in whole if c in set(part)], "in the same order"
    overlapping = [c for c in whole if (end is None or c[0] <= end) and (start is None or c[1] >= start)]
    assert set(overlapping) <= set(part), "every chunk overlapping the request is served"


_CACHE = {}


def _unbounded(api, session, kind, channels):
    # Keyed by the test's data path: each test function writes its data afresh.
    from django.conf import settings as django_settings

    key = (str(django_settings.RTA_DATA_PATH), session, kind, channels)
    if key not in _CACHE:
        _CACHE[key] = fetch(api, session, kind, channels)
    return _CACHE[key]


def test_the_fixture_gives_several_chunks_of_every_kind(api, sessions):
    """The property above is only meaningful with several chunks per kind and session."""
    for session in SESSIONS:
        for kind in KINDS:
            chunks = _unbounded(api, session, kind, expression(session, range(16)))
            assert len(chunks) >= 3, (session, kind)
            # Chunks served as stored ("own") are LZ4; those a binding transforms or merges go out uncompressed,
            # RTA_DATA_TRANSFORMED_COMPRESSION's default since it was measured faster (issue 14).
            want = wire.COMPRESSION_LZ4 if session == "own" else wire.COMPRESSION_NONE
            assert any(c[3] == want for c in chunks), (session, kind)
