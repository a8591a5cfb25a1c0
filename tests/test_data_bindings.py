"""Data bindings on the REST data endpoints: time offset, clipping, channel re-mapping, composition.

Served data is checked sample by sample against a direct model of the binding
rules (see ``data_app.services.bindings``) applied to the samples written, for every
kind, plus the chunk rules: header times are the data's, channels are session
channels, chunk boundaries follow the stored chunks, time order per channel.
"""

import struct
from itertools import accumulate

import grpc
import pytest
from rta.model import data_pb2
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.models import Chunk
from data_app.store import segments
from data_app.store.writer import ChunkWriter
from rta_kit import wire
from sessions_app.services.updates import create_or_update_session
from tests.grpc_helpers import running_server

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a multiple of every span
KINDS = ("periodic", "timestamped", "row", "events")
CHANNEL_EXPR = {"periodic": "0-", "timestamped": "0-", "row": "0-", "events": None}

# Every case on both chunk stores: segment files and object storage (moto).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("store_kind")]


# --- writing ---------------------------------------------------------------------------------


def write_identity(identity, base=0, seconds=20):
    """Every kind for ``identity``: periodic 1-3 (1 kHz, int16/int32/int64: one, two and four chunks),
    timestamped 5, 6 (f64, irregular), row sets [1, 2] and [3], events. Returns the items written per kind."""
    written = {kind: [] for kind in KINDS}
    writer = ChunkWriter(identity)
    for kind, item in identity_items(identity, base, seconds):
        writer.add(kind, item)
        written[kind].append(item)
    writer.flush()
    return written


def identity_items(identity, base=0, seconds=20):
    """``(kind, item)`` of what ``write_identity`` writes (tests writing over gRPC send the same)."""
    items = []

    def add(kind, item):
        items.append((kind, item))

    for ch, fmt in ((1, "h"), (2, "i"), (3, "q")):
        for second in range(seconds):
            values = [(base + ch * 1000 + second * 7 + i) % 30000 for i in range(1000)]
            add(
                "periodic",
                data_pb2.PeriodicData(
                    channel_id=ch,
                    start_timestamp=T0 + second * S,
                    interval=S // 1000,
                    samples=1000,
                    buffer=struct.pack(f"<1000{fmt}", *values),
                ),
            )
    for ch in (5, 6):
        deltas = [0] + [(i * 37 + ch) % 900 + 1 for i in range(1, 3000)]  # scale 10 µs: ~13 s
        add(
            "timestamped",
            data_pb2.TimestampedData(
                channel_id=ch,
                start_timestamp=T0 + 3 * S + ch,
                timestamp_deltas_scale=10_000,
                timestamp_deltas=deltas,
                buffer=struct.pack(f"<{len(deltas)}d", *[base + ch + i / 4 for i in range(len(deltas))]),
            ),
        )
    for i in range(400):
        t = T0 + i * (S // 16)
        add("row", data_pb2.RowData(channel_ids=[1, 2], timestamp=t, buffer=struct.pack("<hd", i, base + i / 2)))
        if i % 3 == 0:
            add("row", data_pb2.RowData(channel_ids=[3], timestamp=t + 1, buffer=struct.pack("<i", base + i)))
    for i in range(300):
        add(
            "events",
            data_pb2.Event(
                event_definition_id=i % 5,
                app_name="app",
                timestamp=T0 + i * (S // 10) + 3,
                status_text=f"{identity}-{i}",
                raw_data=[base, i],
            ),
        )
    return items


def binding(identity, offset=0, start=None, end=None, maps=(), time_ref=0):
    return {
        "identity": identity,
        "time_ref": time_ref,
        "session_time_offset": offset,
        "session_start_time": start,
        "session_end_time": end,
        "channel_bindings": [
            {"first_data_channel": d, "first_session_channel": f, "last_session_channel": last} for d, f, last in maps
        ],
    }


def bind(session, *bindings):
    create_or_update_session(session, [("set_data_bindings", list(bindings))])


# --- samples ---------------------------------------------------------------------------------


def samples_of(kind, items):
    """Comparable samples: (channel key, time, value bytes / event fields)."""
    out = []
    for item in items:
        if kind == "periodic":
            width = len(item.buffer) // item.samples
            out += [
                (item.channel_id, item.start_timestamp + i * item.interval, item.buffer[i * width : (i + 1) * width])
                for i in range(item.samples)
            ]
        elif kind == "timestamped":
            width = len(item.buffer) // len(item.timestamp_deltas)
            scale = item.timestamp_deltas_scale or 1
            times = [item.start_timestamp + scale * d for d in accumulate(item.timestamp_deltas)]
            out += [(item.channel_id, t, item.buffer[i * width : (i + 1) * width]) for i, t in enumerate(times)]
        elif kind == "row":
            out.append((tuple(item.channel_ids), item.timestamp, item.buffer))
        else:
            out.append(((), item.timestamp, (item.event_definition_id, item.status_text, tuple(item.raw_data))))
    return out


def items_of(kind, message):
    return list(
        getattr(
            message,
            {"periodic": "periodic_data", "timestamped": "timestamped_data", "row": "row_data", "events": "events"}[
                kind
            ],
        )
    )


PASS_THROUGH = [{"first_data_channel": 0, "first_session_channel": 0, "last_session_channel": 0xFFFFFFFF}]


def expected(kind, written, bindings, channels=None):
    """The binding rules applied to the written samples (``channels``: requested session channels).

    Without channel bindings anywhere every binding passes every channel 1:1; once one has them, a binding
    without them serves events only (spec §13)."""
    out = []
    any_maps = any(b["channel_bindings"] for b in bindings)
    for b in bindings:
        off, lo, hi = b["session_time_offset"], b["session_start_time"], b["session_end_time"]
        maps = sorted(b["channel_bindings"] if any_maps else PASS_THROUGH, key=lambda c: c["first_session_channel"])

        def session_channels(d):
            return [
                d - c["first_data_channel"] + c["first_session_channel"]
                for c in maps
                if 0 <= d - c["first_data_channel"] <= c["last_session_channel"] - c["first_session_channel"]
            ]

        for key, t, value in samples_of(kind, written[b["identity"]][kind]):
            t += off
            if (lo is not None and t < lo) or (hi is not None and t > hi):
                continue
            if kind == "events":
                out.append((key, t, value))
            elif kind == "row":
                mapped = [session_channels(d) for d in key]
                if maps and all(mapped):
                    ids = tuple(m[0] for m in mapped)
                    if channels is None or any(c in channels for c in ids):
                        out.append((ids, t, value))
            else:
                out += [(s, t, value) for s in session_channels(key) if channels is None or s in channels]
    return sorted(out)


def fetch(api, session, kind, channels=None, **params):
    expr = channels if channels is not None else CHANNEL_EXPR[kind]
    url = f"/rta/v2/sessions/{session}/data/{kind}" + (f"/{expr}" if expr else "")
    response = api.get(url, params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == wire.MEDIA_TYPE
    return wire.read_chunks(b"".join(response.streaming_content))


def served(kind, chunks):
    """Samples served, checking the chunk rules on the way."""
    out, last_by_channel = [], {}
    for chunk in chunks:
        message = chunk.decode(kind)
        samples = samples_of(kind, items_of(kind, message))
        assert samples, "no empty chunks"
        times = [t for _, t, _ in samples]
        assert (chunk.start, chunk.end) == (min(times), max(times)), "header times reflect the data inside"
        keys = {key for key, _, _ in samples}
        if kind in ("periodic", "timestamped"):
            assert keys == {chunk.channel_ids[0]} and len(chunk.channel_ids) == 1
        elif kind == "row":
            assert keys == {tuple(chunk.channel_ids)}
        key = tuple(chunk.channel_ids)
        starts = [samples_of(kind, [item])[0][1] for item in items_of(kind, message)]
        assert starts == sorted(starts), "time order within a chunk"
        assert last_by_channel.get(key, -1) <= chunk.start, "time order within a channel"
        last_by_channel[key] = chunk.end
        for item in items_of(kind, message):
            if kind == "periodic":
                assert item.samples <= 128
            elif kind == "timestamped":
                assert len(item.timestamp_deltas) <= 128
        out += samples
    return sorted(out)


def stored_chunks(identity, kind):
    """(channel_ids, start, end, packed bytes) of every stored chunk."""
    out = []
    with segments.SegmentReader() as reader:  # segment files, or ranged GETs on object storage
        for row in Chunk.objects.filter(identity=identity, kind=kind):
            data = reader.read(row.file, row.offset, row.packed_length)
            out.append((row.channel_ids, row.start_time, row.end_time, data))
    return sorted(out)


def as_stored(chunks):
    return sorted((c.channel_ids, c.start, c.end, c.packed) for c in chunks)


@pytest.fixture
def cars():
    return {"car-a": write_identity("car-a"), "car-b": write_identity("car-b", base=100)}


# --- the cases -----------------------------------------------------------------------------------


def test_without_bindings_a_session_serves_its_own_chunks_as_stored(api):
    written = {"own": write_identity("own")}
    create_or_update_session("own")
    for kind in KINDS:
        chunks = fetch(api, "own", kind)
        assert as_stored(chunks) == stored_chunks("own", kind), kind
        assert served(kind, chunks) == expected(kind, written, [binding("own", maps=[(0, 0, 0xFFFFFFFF)])]), kind


def test_bindings_without_transforms_serve_stored_chunks(api, cars):
    bind("plain", binding("car-a", maps=[(0, 0, 0xFFFFFFFF)]))
    # A clip range that no chunk crosses changes nothing either.
    bind("wide", binding("car-a", start=T0 - S, end=T0 + 1000 * S, maps=[(0, 0, 0xFFFFFFFF)]))
    for kind in KINDS:
        assert as_stored(fetch(api, "plain", kind)) == stored_chunks("car-a", kind), kind
        assert as_stored(fetch(api, "wide", kind)) == stored_chunks("car-a", kind), kind


CASES = {
    "offset-forward": [binding("car-a", offset=3600 * S + 17, maps=[(0, 0, 0xFFFFFFFF)])],
    "offset-backward": [binding("car-a", offset=-T0 + 5 * S, maps=[(0, 0, 0xFFFFFFFF)])],
    "clip": [binding("car-a", start=T0 + 7 * S + 123_456, end=T0 + 12 * S - 1, maps=[(0, 0, 0xFFFFFFFF)])],
    "clip-open-end": [binding("car-a", start=T0 + 4 * S + 5, maps=[(0, 0, 0xFFFFFFFF)])],
    "clip-open-start": [binding("car-a", end=T0 + 9 * S + S // 3, maps=[(0, 0, 0xFFFFFFFF)])],
    "remap": [binding("car-a", maps=[(1, 0x101, 0x102), (5, 0x205, 0x205), (3, 0x10, 0x10)])],
    "remap-data-channels-twice": [
        binding("car-a", maps=[(1, 0x41, 0x42), (1, 0x51, 0x52), (5, 0x45, 0x45), (5, 0x55, 0x55)])
    ],
    "offset-clip-remap": [
        binding("car-a", offset=-2 * S, start=T0 + 3 * S, end=T0 + 15 * S + 7, maps=[(1, 0x11, 0x13), (5, 0x15, 0x16)])
    ],
    "two-identities-one-after-the-other": [
        # car-a's first 10 s, then car-b's data shifted to follow it, on the same session channels.
        binding("car-a", end=T0 + 10 * S - 1, maps=[(0, 0, 0xFFFF)], time_ref=1),
        binding("car-b", offset=10 * S, start=T0 + 10 * S, maps=[(0, 0, 0xFFFF)], time_ref=2),
    ],
    "two-identities-on-the-same-channels": [
        binding("car-a", maps=[(0, 0, 0xFFFF)], time_ref=1),
        binding("car-b", offset=S // 2 + 1, start=T0 + 5 * S, maps=[(1, 1, 3), (5, 5, 6)], time_ref=2),
    ],
    "two-identities-side-by-side": [
        binding("car-a", maps=[(1, 0x1001, 0x1003), (5, 0x1005, 0x1006)]),
        binding("car-b", offset=S // 2, maps=[(1, 0x2001, 0x2003), (5, 0x2005, 0x2006)]),
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_transforms_match_the_binding_rules(api, cars, case, settings):
    # Transformed chunks go out uncompressed by default (faster, see docs/benchmarks.md); with lz4 every chunk
    # served is compressed, whether sent as stored or transformed.
    settings.RTA_DATA_TRANSFORMED_COMPRESSION = "lz4"
    bind("bound", *CASES[case])
    for kind in KINDS:
        chunks = fetch(api, "bound", kind)
        want = expected(kind, cars, CASES[case])
        assert want, f"{kind}: the case serves something"
        assert served(kind, chunks) == want, kind
        assert all(c.compression == wire.COMPRESSION_LZ4 for c in chunks)


@pytest.mark.parametrize("kind", KINDS)
def test_request_bounds_and_channels_are_in_session_terms(api, cars, kind):
    bindings = [binding("car-a", offset=-T0, start=2 * S, end=20 * S, maps=[(1, 0x31, 0x33), (5, 0x35, 0x36)])]
    bind("bound", *bindings)
    start, end = 6 * S + 1, 8 * S
    chunks = fetch(api, "bound", kind, start=start, end=end)
    got = served(kind, chunks)
    everything = expected(kind, cars, bindings)
    # Everything in the requested range is there; over-read is whole chunks of bound data only.
    assert [s for s in got if start <= s[1] <= end] == [s for s in everything if start <= s[1] <= end]
    assert set(got) <= set(everything)
    assert all(c.start <= end and c.end >= start for c in chunks)
    if kind in ("periodic", "timestamped"):
        only = fetch(api, "bound", kind, channels="32,36")
        assert served(kind, only) == [s for s in everything if s[0] in (0x32, 0x36)]
        # Data channel 2 is session channel 0x32: asking for 2 gets nothing.
        assert fetch(api, "bound", kind, channels="2") == []
    # A range the binding clips away entirely.
    assert fetch(api, "bound", kind, start=21 * S) == []


def test_a_clip_range_between_samples_serves_no_chunks(api, cars):
    # Chunks overlap the range (so they are decoded) but hold no sample inside it: no empty chunks.
    bind("gap", binding("car-a", start=T0 + 500_000, end=T0 + 600_000, maps=[(0, 0, 0xFFFF)]))
    for kind in KINDS:
        assert fetch(api, "gap", kind) == [], kind


def test_row_sets_need_every_channel_mapped(api, cars):
    bind("rows", binding("car-a", maps=[(2, 0x102, 0x102), (3, 0x103, 0x103)]))  # channel 1 unmapped
    got = served("row", fetch(api, "rows", "row"))
    assert {key for key, _, _ in got} == {(0x103,)}
    bind("rows", binding("car-a", maps=[(1, 0x101, 0x103)]))
    got = served("row", fetch(api, "rows", "row", channels="102"))
    assert {key for key, _, _ in got} == {(0x101, 0x102)}


def test_without_channel_bindings_anywhere_every_channel_passes_through(api, cars):
    """§13: a lone binding without channel bindings serves every channel 1:1, offset and clipping applied."""
    lone = [binding("car-a", offset=S, start=T0 + 3 * S, end=T0 + 14 * S)]
    bind("lone", *lone)
    for kind in KINDS:
        want = expected(kind, cars, lone)
        assert want, kind
        assert served(kind, fetch(api, "lone", kind)) == want, kind
    # Untransformed, the stored chunks go out as stored.
    bind("lone-plain", binding("car-a"))
    for kind in KINDS:
        assert as_stored(fetch(api, "lone-plain", kind)) == stored_chunks("car-a", kind), kind
    # Two bindings, neither with channel bindings: both pass through (here one after the other in time).
    pair = [
        binding("car-a", end=T0 + 10 * S - 1, time_ref=1),
        binding("car-b", offset=10 * S, start=T0 + 10 * S, time_ref=2),
    ]
    bind("pair", *pair)
    for kind in KINDS:
        assert served(kind, fetch(api, "pair", kind)) == expected(kind, cars, pair), kind


def test_once_a_binding_has_channel_bindings_one_without_serves_only_events(api, cars):
    bindings = [binding("car-a", offset=S), binding("car-b", maps=[(1, 0x101, 0x102)])]
    bind("mixed", *bindings)
    for kind in ("periodic", "timestamped", "row"):
        got = served(kind, fetch(api, "mixed", kind))
        assert got == expected(kind, cars, bindings), kind
        assert all(key not in (1, 2, 3, 5, 6) for key, _, _ in got), f"{kind}: car-a serves no channel data"
    assert {key for key, _, _ in served("periodic", fetch(api, "mixed", "periodic"))} == {0x101, 0x102}
    events = served("events", fetch(api, "mixed", "events"))
    assert events == expected("events", cars, bindings)
    assert {value[1].split("-")[1] for _, _, value in events} == {"a", "b"}, "both bindings serve events"


def test_bindings_are_read_when_the_request_comes(api, cars):
    bind("moving", binding("car-a", maps=[(1, 1, 1)]))
    first = served("periodic", fetch(api, "moving", "periodic", channels="1"))
    create_or_update_session("moving", [("update_data_bindings", [binding("car-a", offset=S, maps=[(1, 1, 1)])])])
    moved = served("periodic", fetch(api, "moving", "periodic", channels="1"))
    assert moved == [(c, t + S, v) for c, t, v in first]
    create_or_update_session("moving", [("delete_data_bindings", [{"identity": "car-a"}])])
    assert fetch(api, "moving", "periodic", channels="1") == []  # no bindings: its own (empty) identity


@pytest.mark.django_db(transaction=True)
def test_data_reader_reads_data_identities_unbound(cars, django_db_blocker):
    """DataReader serves a data identity as stored (spec §7): a session's bindings do not apply."""
    bind("car-a", binding("car-b", offset=S, maps=[(0, 0x500, 0x600)]))
    with running_server(django_db_blocker, services=["data_app.grpc.register"]) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DataReaderStub(channel)
            request = pb.ReadChannelDataStreamRequest(data_identity="car-a", channels="1-3")
            lists = list(stub.ReadPeriodicDataStream(request))
    got = sorted(s for lst in lists for s in samples_of("periodic", lst.periodic_data))
    assert got == sorted(samples_of("periodic", cars["car-a"]["periodic"]))
