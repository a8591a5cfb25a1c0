"""The decoding path's wire-level transforms (``rta_kit.patching``) against protobuf's.

``transforms.apply`` patches times and channels in a list's wire bytes, and
clips by the times it finds there, instead of parsing and re-serialising the
list; ``transforms._transformed_message`` (protobuf: parse, change, serialise)
is the reference. Property tests check every kind, random items, offsets
(negative, large, overflowing), re-mapping and clipping, byte for byte; other
tests check the wire-level way is the one taken for the lists the store
writes, and that the reader serves transformed chunks uncompressed on request.
"""

import struct
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rta.model import data_pb2

from rta_kit import items, patching, transforms, wire
from rta_kit.items import PeriodicRun
from rta_kit.timestamped import TimestampedRun

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT32 = st.integers(0, (1 << 32) - 1)
S = 1_000_000_000
T0 = 1_700_000_000 * S
KINDS = ("periodic", "timestamped", "row", "events")


@dataclass(frozen=True)
class Ref:
    channel_ids: list
    start_time: int
    end_time: int


# --- random lists ------------------------------------------------------------------------------

times = st.one_of(
    st.integers(T0 - 100 * S, T0 + 100 * S),
    st.integers(INT64_MIN, INT64_MAX),
    st.integers(-(10**6), -1),
    st.integers(1, 10**6),
    st.sampled_from([0, 1, -1, INT64_MIN, INT64_MAX, T0]),  # a time of 0 is left out of the wire format
)
offsets = st.one_of(
    st.just(0),
    st.integers(INT64_MIN, INT64_MAX),
    st.integers(-(10**18), 10**18),
    st.integers(-(10**4), 10**4),
    st.sampled_from([3600 * S, -3600 * S, -T0, INT64_MAX, INT64_MIN]),
)
int64 = st.integers(INT64_MIN, INT64_MAX)
small_int64 = st.one_of(st.integers(-5, 2000), int64)


def periodic_items(start):
    return st.builds(
        data_pb2.PeriodicData,
        channel_id=st.one_of(st.integers(0, 300), UINT32),
        start_timestamp=start,
        interval=st.one_of(st.integers(1, 10**9), st.integers(1, 10**9), small_int64),
        samples=st.one_of(st.integers(1, 130), st.integers(1, 130), st.integers(-(1 << 31), (1 << 31) - 1)),
        buffer=st.binary(max_size=40),
    )


def timestamped_items(start):
    return st.builds(
        data_pb2.TimestampedData,
        channel_id=st.one_of(st.integers(0, 300), UINT32),
        start_timestamp=start,
        timestamp_deltas_scale=small_int64,
        timestamp_deltas=st.lists(small_int64, max_size=6),
        buffer=st.binary(max_size=40),
    )


def row_items(start):
    return st.builds(
        data_pb2.RowData,
        channel_ids=st.lists(st.one_of(st.integers(0, 300), UINT32), max_size=4),
        timestamp=start,
        buffer=st.binary(max_size=24),
    )


def event_items(start):
    return st.builds(
        data_pb2.Event,
        event_definition_id=st.integers(-(1 << 31), (1 << 31) - 1),
        app_name=st.text(max_size=6),
        timestamp=start,
        status_text=st.text(max_size=6),
        raw_data=st.lists(st.floats(allow_nan=False), max_size=3),
    )


ITEMS = {"periodic": periodic_items, "timestamped": timestamped_items, "row": row_items, "events": event_items}
TIME_NAME = {"periodic": "start_timestamp", "timestamped": "start_timestamp", "row": "timestamp", "events": "timestamp"}


@st.composite
def runs(draw, kind):
    """Items as the store writes them: copies of one item at regular times (so the lists have groups)."""
    item = draw(ITEMS[kind](st.just(1)))
    first, step = draw(times), draw(st.sampled_from([1, 1000, 128 * 1_000_000, -7]))
    out = []
    for i in range(draw(st.integers(1, 40))):
        copy = type(item)()
        copy.CopyFrom(item)
        setattr(copy, TIME_NAME[kind], max(INT64_MIN, min(INT64_MAX, first + i * step)))
        out.append(copy)
    return out


@st.composite
def lists(draw, kind):
    parts = draw(st.lists(st.one_of(runs(kind), st.lists(ITEMS[kind](times), max_size=3)), max_size=4))
    message = wire.LIST_TYPES[kind]()
    getattr(message, items.LIST_FIELDS[kind]).extend(item for part in parts for item in part)
    return message.SerializeToString()


@st.composite
def store_lists(draw, kind):
    """Periodic or timestamped lists as the store writes them: runs cut into equal items and a remainder."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    width = draw(st.sampled_from([1, 2, 4, 8]))
    start = draw(st.one_of(st.integers(T0 - 100 * S, T0 + 100 * S), st.integers(-(10**15), 10**15)))
    runs_ = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 3000))
        data = rng.integers(0, 256, n * width, dtype=np.uint8).tobytes()
        if kind == "periodic":
            interval = draw(st.integers(1, 10**7))
            runs_.append(PeriodicRun(start, interval, width, data, n))
            start += n * interval + draw(st.integers(1, 10**9))
        else:
            base = draw(st.integers(1, 10**7))  # jittered around it, or anywhere from 1
            low = draw(st.sampled_from([base, 1]))
            gaps = rng.integers(low, base + draw(st.integers(1, base // 10 + 1)), n)
            times_ = start + np.cumsum(gaps) - gaps[0]
            runs_.append(TimestampedRun.from_times(times_, data, width))
            start = int(times_[-1]) + draw(st.integers(1, 10**9))
    channel = draw(st.one_of(st.integers(0, 300), UINT32))
    payload, *_ = items.window_payload(kind, channel, runs_, draw(st.sampled_from([128, 128, 7, 1000])))
    return bytes(payload)


@st.composite
def chunk_transforms(draw, kind, ref):
    channel_ids = None
    if kind in ("periodic", "timestamped") and draw(st.booleans()):
        channel_ids = (draw(st.one_of(st.integers(0, 300), UINT32)),)
    elif kind == "row" and draw(st.booleans()):
        channel_ids = tuple(draw(st.lists(st.one_of(st.integers(0, 300), UINT32), min_size=1, max_size=4)))
    # Bounds mostly near or inside the chunk (what a binding's window does to a chunk), sometimes anywhere.
    span = max(0, ref.end_time - ref.start_time)
    near = st.builds(lambda k, d: ref.start_time + span * k // 1000 + d, st.integers(0, 1000), st.integers(-9, 9))
    choices = (st.none(), near, near, times)
    low, high = (draw(choices[draw(st.integers(0, 3))]) for _ in "lh")
    if low is not None and high is not None and low > high and draw(st.booleans()):
        low, high = high, low
    return transforms.ChunkTransform(draw(offsets), low, high, channel_ids)


# --- the reference -----------------------------------------------------------------------------


def by_protobuf(kind, payload, transform, ref):
    """What ``apply`` gave before the wire-level way: ``(bytes, start, end, channels)``, None, or the exception."""
    try:
        out = transforms._transformed_message(kind, bytes(payload), transform, ref)
    except (ValueError, OverflowError, ZeroDivisionError) as exc:  # items the store would refuse
        return type(exc)
    if out is None:
        return None
    message, first, last = out
    channels = list(transform.channel_ids) if transform.channel_ids is not None else list(ref.channel_ids)
    return message.SerializeToString(), first, last, channels


def by_apply(kind, payload, transform, ref):
    try:
        out = transforms.apply(kind, payload, transform, ref)
    except (ValueError, OverflowError, ZeroDivisionError) as exc:  # items the store would refuse
        return type(exc)
    if out is None:
        return None
    return bytes(out.payload), out.start, out.end, out.channel_ids


def reference_ref(payload, kind):
    """A ChunkRef-like whose bounds are the list's own (as the index has them); None for an empty list."""
    message = wire.LIST_TYPES[kind].FromString(payload)
    entries = getattr(message, items.LIST_FIELDS[kind])
    if not entries:
        return None
    try:
        first = min(items.start_time(kind, item) for item in entries)
        last = max(items.end_time(kind, item) for item in entries)
    except (ValueError, OverflowError):
        return None
    return Ref([7], first, last)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_apply_equals_protobuf_byte_for_byte(kind, data):
    payload = data.draw(lists(kind))
    ref = reference_ref(payload, kind)
    assume(ref is not None)
    transform = data.draw(chunk_transforms(kind, ref))
    want = by_protobuf(kind, payload, transform, ref)
    assert by_apply(kind, payload, transform, ref) == want
    # A bytearray is the caller's own buffer: patched in place, same result.
    assert by_apply(kind, bytearray(payload), transform, ref) == want


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
@PROPERTY
@given(data=st.data())
def test_apply_equals_protobuf_on_store_lists(kind, data):
    payload = data.draw(store_lists(kind))
    ref = reference_ref(payload, kind)
    transform = data.draw(chunk_transforms(kind, ref))
    if data.draw(st.booleans()):
        transform = transforms.ChunkTransform(transform.offset, None, None, transform.channel_ids)
    assert by_apply(kind, payload, transform, ref) == by_protobuf(kind, payload, transform, ref)


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_shifted_equals_protobuf_or_declines(kind, data):
    """``patching.shifted`` alone: the protobuf result, or None with the caller's buffer untouched."""
    payload = data.draw(lists(kind))
    ref = reference_ref(payload, kind)
    assume(ref is not None)
    transform = data.draw(chunk_transforms(kind, ref))
    unclipped = transforms.ChunkTransform(transform.offset, None, None, transform.channel_ids)
    buffer = bytearray(payload)
    out = patching.shifted(kind, buffer, unclipped.offset, unclipped.channel_ids)
    if out is None:
        assert buffer == payload
    else:
        assert bytes(out) == by_protobuf(kind, payload, unclipped, ref)[0]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=200), offset=offsets)
def test_junk_is_declined_or_patched_as_protobuf_would(kind, junk, offset):
    """Bytes that are no list (or not one in the expected layout) never crash the scan."""
    out = patching.shifted(kind, bytearray(junk), offset)
    if out is None:
        return
    try:
        message = wire.LIST_TYPES[kind].FromString(junk)
    except Exception:  # noqa: BLE001 - protobuf checks what the scan leaves alone (UTF-8, packed contents)
        return
    for item in getattr(message, items.LIST_FIELDS[kind]):
        setattr(item, TIME_NAME[kind], getattr(item, TIME_NAME[kind]) + offset)
    assert wire.LIST_TYPES[kind].FromString(bytes(out)) == message


# --- the lists the store writes take the wire-level way -----------------------------------------


def store_list(kind, samples=20_000):
    """One chunk's list as the store writes it (periodic int16 at 1 kHz; timestamped f64, jittered)."""
    rng = np.random.default_rng(5)
    if kind == "periodic":
        walk = np.cumsum(rng.integers(-2, 3, samples)).astype("<i2")
        run = PeriodicRun(T0, S // 1000, 2, walk.tobytes(), samples)
        payload, first, last, _ = items.window_payload("periodic", 0x100, [run])
    elif kind == "timestamped":
        times_ = T0 + np.cumsum(rng.integers(900_000, 1_100_000, samples))
        run = TimestampedRun.from_times(times_, rng.random(samples).tobytes(), 8)
        payload, first, last, _ = items.window_payload("timestamped", 0x100, [run])
    elif kind == "row":
        rows = [
            data_pb2.RowData(channel_ids=[1, 2], timestamp=T0 + i * S // 100, buffer=struct.pack("<hd", i, i / 2))
            for i in range(2000)
        ]
        payload, first, last, _ = items.window_payload("row", 0, rows)
    else:  # texts of one length, as a logger's events of one kind have
        events = [
            data_pb2.Event(event_definition_id=5, app_name="app", timestamp=T0 + i * S // 10, raw_data=[i, 1.5])
            for i in range(300)
        ]
        payload, first, last, _ = items.window_payload("events", 0, events)
    return bytes(payload), Ref([0x100] if kind in ("periodic", "timestamped") else [1, 2], first, last)


@pytest.fixture
def no_protobuf(monkeypatch):
    """Fail if ``apply`` falls back to protobuf's way for the whole list."""

    def refuse(*args):
        raise AssertionError("took protobuf's way")

    monkeypatch.setattr(transforms, "_transformed_message", refuse)


STORE_TRANSFORMS = {
    "offset": lambda ref: transforms.ChunkTransform(3600 * S),
    "negative offset": lambda ref: transforms.ChunkTransform(-T0 - 5 * S - 7),
    "re-map": lambda ref: transforms.ChunkTransform(0, channel_ids=(0x7_0000,) * len(ref.channel_ids)),
    "re-map, same length": lambda ref: transforms.ChunkTransform(S, channel_ids=(0x101,) * len(ref.channel_ids)),
    "clip both ends": lambda ref: transforms.ChunkTransform(
        S, ref.start_time + 1_234_567_891, ref.end_time - 987_654_321
    ),
    "clip low": lambda ref: transforms.ChunkTransform(-S, ref.start_time + 3 * S + 1),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", sorted(STORE_TRANSFORMS))
def test_store_lists_are_patched_without_protobuf(kind, case, monkeypatch):
    payload, ref = store_list(kind)
    transform = STORE_TRANSFORMS[case](ref)
    want = by_protobuf(kind, payload, transform, ref)
    assert len(patching.scan(kind, payload)) <= 3  # equal items: a handful of groups, whatever the number of items
    monkeypatch.setattr(transforms, "_transformed_message", _refuse)
    assert by_apply(kind, payload, transform, ref) == want


def _refuse(*args):
    raise AssertionError("took protobuf's way")


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_a_clipped_list_parses_only_the_items_on_the_bounds(kind, monkeypatch):
    payload, ref = store_list(kind)
    transform = transforms.ChunkTransform(0, ref.start_time + 1_000_500, ref.end_time - 2 * S - 500)
    want = by_protobuf(kind, payload, transform, ref)
    parsed = []
    item_type = transforms.ITEM_TYPES[kind]
    real = item_type.FromString
    monkeypatch.setattr(item_type, "FromString", lambda data: parsed.append(1) or real(data))
    monkeypatch.setattr(transforms, "_transformed_message", _refuse)
    assert by_apply(kind, payload, transform, ref) == want
    assert len(parsed) == 2


@pytest.mark.parametrize(
    "case",
    ["overflow", "to zero", "from zero", "unknown field", "fields out of order"],
)
def test_unusual_lists_take_protobufs_way(case):
    item = data_pb2.PeriodicData(channel_id=3, start_timestamp=T0, interval=1000, samples=2, buffer=b"abcd")
    offset = 5
    if case == "overflow":
        item.start_timestamp, offset = INT64_MAX - 3, 5
    elif case == "to zero":
        offset = -T0
    elif case == "from zero":
        item.start_timestamp = 0
    message = data_pb2.PeriodicDataList(periodic_data=[item, item])
    payload = message.SerializeToString()
    if case == "unknown field":
        body = item.SerializeToString() + b"\x30\x01"  # field 6, varint
        payload = (b"\x0a" + bytes([len(body)]) + body) * 2
    elif case == "fields out of order":
        body = b"\x18\xe8\x07" + b"\x11" + struct.pack("<q", T0) + b"\x20\x02\x2a\x04abcd"
        payload = (b"\x0a" + bytes([len(body)]) + body) * 2
    buffer = bytearray(payload)
    assert patching.shifted("periodic", buffer, offset) is None
    assert buffer == payload  # nothing written before declining
    ref = Ref([3], 0, 0)
    transform = transforms.ChunkTransform(offset)
    assert by_apply("periodic", payload, transform, ref) == by_protobuf("periodic", payload, transform, ref)


def test_lists_of_items_laid_out_differently_take_protobufs_way():
    """Events with texts of different lengths: walking them one by one would be slower than protobuf."""
    events = [
        data_pb2.Event(event_definition_id=i % 5, app_name="app", status_text="x" * (i % 7), timestamp=T0 + i * S)
        for i in range(300)
    ]
    payload = data_pb2.EventsList(events=events).SerializeToString()
    assert patching.scan("events", payload) is None
    ref = Ref([], T0, T0 + 299 * S)
    for transform in (transforms.ChunkTransform(-3 * S), transforms.ChunkTransform(S, T0 + 10 * S, T0 + 20 * S)):
        assert by_apply("events", payload, transform, ref) == by_protobuf("events", payload, transform, ref)


def test_apply_packed_decompresses_into_its_own_buffer():
    payload, ref = store_list("periodic")
    packed = wire.compress(payload)
    transform = transforms.ChunkTransform(3600 * S)
    out = transforms.apply_packed("periodic", packed, len(payload), wire.COMPRESSION_LZ4, transform, ref)
    assert (bytes(out.payload), out.start, out.end) == by_protobuf("periodic", payload, transform, ref)[:3]
    same = transforms.apply_packed("periodic", payload, len(payload), wire.COMPRESSION_NONE, transform, ref)
    assert bytes(same.payload) == bytes(out.payload)


# --- the reader's choice of compression for transformed chunks ----------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("setting", ["lz4", "none"])
def test_transformed_chunks_go_out_as_configured(settings, setting):
    from data_app.store import reader
    from data_app.store.writer import ChunkWriter

    writer = ChunkWriter("fast-transforms")
    walk = np.cumsum(np.random.default_rng(2).integers(-2, 3, 50_000)).astype("<i2")
    writer.add(
        "periodic",
        data_pb2.PeriodicData(
            channel_id=9, start_timestamp=T0, interval=S // 1000, samples=len(walk), buffer=walk.tobytes()
        ),
    )
    writer.flush()
    settings.RTA_DATA_TRANSFORMED_COMPRESSION = setting
    refs = reader.find_chunks("fast-transforms", "periodic")
    assert len(refs) >= 2
    transform = transforms.ChunkTransform(3600 * S, None, T0 + 45 * S)  # the last chunk clipped
    stream = reader.open_stream("periodic", ["fast-transforms"], lambda: [(ref, transform) for ref in refs])
    chunks = wire.read_chunks(b"".join(stream))
    want = wire.COMPRESSION_LZ4 if setting == "lz4" else wire.COMPRESSION_NONE
    assert [c.compression for c in chunks] == [want] * len(chunks)
    decoded = [c.decode("periodic") for c in chunks]
    starts = [item.start_timestamp for lst in decoded for item in lst.periodic_data]
    assert starts[0] == T0 + 3600 * S
    assert sum(item.samples for lst in decoded for item in lst.periodic_data) == 45_001
    assert [(c.start, c.end) for c in chunks][-1][1] == T0 + 45 * S + 3600 * S
