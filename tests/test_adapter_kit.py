"""The data adapter kit (rta_kit): the stable grid, chunking, the ASGI data service in real server
processes (daphne, and uvicorn through ``python -m rta_kit.serve``), the Schema Mapping client, and
the example CSV adapter (examples/csv_adapter) as a separate process."""

import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from rta.toolkit.api import schema_mapping_service_pb2 as schema_pb

from rta_core.channels import parse_channels
from rta_core.errors import NotFound
from rta_kit import chunking, items, windows, wire
from rta_kit.chunking import ChunkingBuffer, event, event_chunks, periodic_chunks, row_chunks, series_chunks
from rta_kit.datatypes import DTYPES, as_samples, sample_dtype, type_name
from rta_kit.grid import SECOND, ChunkGrid
from rta_kit.schema_client import SchemaMappingClient, channel_expression, field_mapping, fields
from rta_kit.service import ABORT_FRAME
from rta_kit.timestamped import TimestampedRun
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "csv_adapter"
T0 = 1_700_000_000 * SECOND
rng = np.random.default_rng(20260101)


# --- decoding helpers ---------------------------------------------------------------------------------


def decoded_samples(kind, chunks, dtype):
    """``{channel: [(time, value), ...]}`` of chunks (``Chunk``s or ``DecodedChunk``s), in order."""
    out = {}
    for chunk in chunks:
        payload = chunk.payload
        message = items.LIST_TYPES[kind].FromString(bytes(payload))
        for item in getattr(message, items.LIST_FIELDS[kind]):
            values = np.frombuffer(item.buffer, dtype=dtype).tolist()
            if kind == "periodic":
                times = [item.start_timestamp + i * item.interval for i in range(item.samples)]
            else:
                times = items.times(kind, item)
            assert len(times) == len(values)
            out.setdefault(item.channel_id, []).extend(zip(times, values))
    return out


def chunk_items(kind, chunk):
    return list(getattr(items.LIST_TYPES[kind].FromString(bytes(chunk.payload)), items.LIST_FIELDS[kind]))


def check_chunk_rules(kind, chunks):
    """Spec §8: one channel a chunk, items of at most 128 samples, lists within 64 KiB, times in order."""
    for chunk in chunks:
        assert len(chunk.channel_ids) == 1
        entries = chunk_items(kind, chunk)
        assert entries and all(items.sample_count(kind, e) <= items.TARGET_ITEM_SAMPLES for e in entries)
        assert all(e.channel_id == chunk.channel_ids[0] for e in entries)
        assert len(chunk.payload) <= 64 * 1024
        assert items.start_time(kind, entries[0]) == chunk.start
        assert items.end_time(kind, entries[-1]) == chunk.end
    for a, b in zip(chunks, chunks[1:]):
        if a.channel_ids == b.channel_ids:
            assert a.end < b.start


# --- the grid -------------------------------------------------------------------------------------------


def test_grid_spans_aim_at_a_thousand_samples_within_one_to_a_hundred_seconds():
    ms = 1_000_000
    assert ChunkGrid.for_interval(10 * ms).span == 10 * SECOND  # 100 Hz: 1000 samples
    assert ChunkGrid.for_interval(ms).span == SECOND
    assert ChunkGrid.for_interval(3 * ms).span == 2 * SECOND
    assert ChunkGrid.for_interval(SECOND).span == 100 * SECOND  # never more than 100 s from the rule
    assert ChunkGrid.for_interval(10 * SECOND).span == 100 * SECOND
    assert ChunkGrid.for_interval(ms // 10).span == SECOND  # 10 kHz: still 1 s (80 KB)
    assert ChunkGrid.for_interval(1000).span < SECOND  # 1 MHz f64: 8 MB a second, so a sub-second span
    assert ChunkGrid.for_interval(None).span == ChunkGrid.for_interval(0).span == 10 * SECOND
    assert all(100 * SECOND % ChunkGrid.for_interval(i).span == 0 for i in (1, 999, 10**5, 7 * ms, 10**9))
    with pytest.raises(ValueError):
        ChunkGrid(1001 * SECOND)
    with pytest.raises(ValueError):
        ChunkGrid(0)


def test_grid_snaps_requests_outwards_to_whole_windows():
    grid = ChunkGrid(10 * SECOND)
    assert grid.snap(15 * SECOND, 25 * SECOND) == (10 * SECOND, 30 * SECOND - 1)
    assert grid.snap(10 * SECOND, 10 * SECOND) == (10 * SECOND, 20 * SECOND - 1)
    assert grid.snap(-1, 0) == (-10 * SECOND, 10 * SECOND - 1)
    assert grid.snap(None, None) == (-(2**63), 2**63 - 1)
    assert grid.snap(2**63 - 5, None)[0] == (2**63 - 5) // grid.span * grid.span
    assert grid.window(-1) == (-10 * SECOND, -1)
    assert list(grid.windows(5 * SECOND, 20 * SECOND)) == [
        (0, 10 * SECOND - 1),
        (10 * SECOND, 20 * SECOND - 1),
        (20 * SECOND, 30 * SECOND - 1),
    ]
    assert list(grid.windows(2, 1)) == []


def _series(kind, n):
    if kind == "periodic":  # regular with a few holes
        times = T0 + 7 * 10**6 + np.arange(n, dtype=np.int64) * 10**7
        keep = np.ones(n, bool)
        keep[rng.integers(0, n, 5)] = False
        return times[keep]
    return T0 + np.cumsum(rng.integers(1, 40, n)).astype(np.int64) * 10**6  # irregular


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_the_same_sample_lands_in_the_same_chunk_whatever_the_request(kind):
    times = _series(kind, 20_000)
    values = rng.normal(size=len(times))
    grid = ChunkGrid.for_interval(10**7)
    every = series_chunks(3, times, values, kind, grid=grid)
    by_start = {c.start: c for c in every}
    assert len(by_start) == len(every) > 10
    for _ in range(40):
        start, end = sorted(rng.integers(int(times[0]) - 20 * SECOND, int(times[-1]) + 20 * SECOND, 2).tolist())
        # The adapter's way: read the request rounded outwards to whole windows from its store, then chunk it.
        low, high = grid.snap(start, end)
        inside = (times >= low) & (times <= high)
        for source_times, source_values in ((times, values), (times[inside], values[inside])):
            chunks = series_chunks(3, source_times, source_values, kind, grid=grid, start=start, end=end)
            for chunk in chunks:
                whole = by_start[chunk.start]
                assert (chunk.end, chunk.samples) == (whole.end, whole.samples)
                assert decoded_samples(kind, [chunk], "<f8") == decoded_samples(kind, [whole], "<f8")
                assert chunk.end >= start and chunk.start <= end
            covered = decoded_samples(kind, chunks, "<f8").get(3, [])
            wanted = [t for t in times.tolist() if start <= t <= end]
            assert set(wanted) <= {t for t, _ in covered}


def test_chunks_of_many_windows_at_once_are_those_of_each_window_alone():
    # The kit encodes whole windows in one call of the store's encoders; each window must come out as
    # items.window_payload gives it for that window alone (the store's way), byte for byte.
    for trial in range(60):
        n = int(rng.integers(1, 6000))
        grid = ChunkGrid(int(rng.choice([SECOND, 2 * SECOND, 10 * SECOND])))
        t0 = int(rng.integers(-30 * SECOND, 30 * SECOND))  # some cross time 0 (items at 0 encode shorter)
        data_type = str(rng.choice(list(DTYPES)))
        values = as_samples(rng.integers(0, 100, n), data_type)
        if trial % 2:
            interval = int(rng.choice([10**6, 10**7, 3 * 10**6, 2 * 10**8]))
            got = periodic_chunks(3, t0, interval, values, data_type, grid)
            run = items.PeriodicRun(t0, interval, values.itemsize, values.tobytes(), n)
            size = grid.span // interval
            per_item = windows._item_samples(size) if grid.span % interval == 0 else None
            kind, runs = "periodic", [run]
        else:
            gaps = [rng.integers(1, 10**7, n), 10**7 + rng.integers(0, 3, n) * 1000, rng.integers(1, 10**11, n)]
            times = t0 + np.cumsum(gaps[trial // 2 % 3]).astype(np.int64)
            got = series_chunks(4, times, values, "timestamped", data_type=data_type, grid=grid)
            kind, runs = "timestamped", [TimestampedRun.from_times(times, values.tobytes(), values.itemsize)]
            per_item = None
        channel = 3 if kind == "periodic" else 4
        expected = []
        for _window, pieces in sorted(windows.cut_runs(kind, runs, grid.span).items()):
            payload, first, last, count = items.window_payload(kind, channel, pieces, per_item or 128)
            expected.append((first, last, count, bytes(payload)))
        assert [(c.start, c.end, c.samples, bytes(c.payload)) for c in got] == expected


# --- chunking -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", list(DTYPES))
def test_periodic_samples_of_every_type_decode_back_sample_by_sample(data_type):
    dtype = sample_dtype(data_type)
    n = 5000
    if dtype.kind == "f":
        values = rng.normal(scale=1000, size=n).astype(dtype)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, n, endpoint=True, dtype=dtype)
    chunks = periodic_chunks(0x2A, T0 + 123, 10**7, values, data_type)
    check_chunk_rules("periodic", chunks)
    assert [c.kind for c in chunks] == ["periodic"] * len(chunks)
    got = decoded_samples("periodic", chunks, dtype)[0x2A]
    assert [t for t, _ in got] == [T0 + 123 + i * 10**7 for i in range(n)]
    assert np.array_equal(np.array([v for _, v in got], dtype=dtype), values)
    # The grid: 100 Hz -> 10 s windows, one chunk for each.
    assert all(c.start // (10 * SECOND) == c.end // (10 * SECOND) for c in chunks)


def test_regular_series_from_times_detect_their_interval_and_split_at_holes():
    times = T0 + np.arange(3000, dtype=np.int64) * 4_000_000
    times = np.delete(times, [100, 101, 2000])
    values = np.arange(len(times), dtype=np.float64)
    assert chunking.detect_interval(times) == 4_000_000
    chunks = series_chunks(7, times, values)  # periodic, interval detected
    check_chunk_rules("periodic", chunks)
    got = decoded_samples("periodic", chunks, "<f8")[7]
    assert got == list(zip(times.tolist(), values.tolist()))
    assert {e.interval for c in chunks for e in chunk_items("periodic", c)} == {4_000_000}
    # Given the interval, the same.
    assert [bytes(c.payload) for c in series_chunks(7, times, values, interval=4_000_000)] == [
        bytes(c.payload) for c in chunks
    ]


def test_irregular_series_become_timestamped_chunks():
    times = T0 + np.cumsum(rng.integers(1, 10**8, 4000)).astype(np.int64)
    values = rng.normal(size=len(times)).astype(np.float32)
    chunks = series_chunks(9, times, values, "timestamped", data_type="f32")
    check_chunk_rules("timestamped", chunks)
    got = decoded_samples("timestamped", chunks, "<f4")[9]
    assert got == list(zip(times.tolist(), values.tolist()))


def test_values_are_converted_to_the_channel_type():
    assert as_samples([1.6, -1.4, np.nan, 1e9], "s16").tolist() == [2, -1, 0, 32767]
    assert as_samples(np.array([300, -5]), "u8").tolist() == [255, 0]
    assert as_samples([1, 2], "f32").dtype == np.dtype("<f4")
    for spelling in ("s16", "INT16", "TARGET_CHANNEL_DATA_TYPE_INT16", 5, np.int16, "<i2"):
        assert type_name(spelling) == "s16"
    assert type_name(0) == type_name(None) == "f64"
    with pytest.raises(ValueError):
        type_name("s24")
    with pytest.raises(ValueError):
        type_name(9)  # reserved


def test_the_chunking_buffer_takes_rows_and_arrays_of_several_channels():
    buffer = ChunkingBuffer()
    rows = [(T0 + i * 10**7, float(i), None if i % 3 == 0 else i * 2, i % 5) for i in range(2500)]
    buffer.add_rows(rows, channels=[1, 2, 3], data_types=["f64", "s32", "u8"])
    buffer.add_series(4, [T0 + 5, T0 + 7 * SECOND, T0 + 9 * SECOND], [1.0, 2.0, 3.0], kind="timestamped")
    buffer.add_periodic(5, T0, 10**6, np.arange(10, dtype=np.int16), "s16")
    assert buffer.channels() == [1, 2, 3, 4, 5]
    chunks = buffer.chunks()
    kinds = {c.channel_ids[0]: c.kind for c in chunks}
    assert kinds == {1: "periodic", 2: "periodic", 3: "periodic", 4: "timestamped", 5: "periodic"}
    by_channel = lambda ch: [c for c in chunks if c.channel_ids == (ch,)]  # noqa: E731
    assert decoded_samples("periodic", by_channel(1), "<f8")[1] == [(t, a) for t, a, _, _ in rows]
    assert decoded_samples("periodic", by_channel(2), "<i4")[2] == [(t, b) for t, _, b, _ in rows if b is not None]
    assert decoded_samples("periodic", by_channel(3), "<u1")[3] == [(t, c) for t, _, _, c in rows]
    assert decoded_samples("timestamped", by_channel(4), "<f8")[4] == [
        (T0 + 5, 1.0),
        (T0 + 7 * SECOND, 2.0),
        (T0 + 9 * SECOND, 3.0),
    ]
    # A request keeps the chunks overlapping it, whole.
    some = buffer.chunks(start=T0 + 11 * SECOND, end=T0 + 12 * SECOND)
    assert some and all(c.start <= T0 + 12 * SECOND and c.end >= T0 + 11 * SECOND for c in some)
    assert {(c.channel_ids, c.start, c.end) for c in some} <= {(c.channel_ids, c.start, c.end) for c in chunks}
    # Later samples of a channel may overlap earlier ones: the later write wins, as in the store.
    buffer.add_periodic(5, T0 + 2 * 10**6, 10**6, [100, 101], "s16")
    (chunk,) = [c for c in buffer.chunks() if c.channel_ids == (5,)]
    assert [v for _, v in decoded_samples("periodic", [chunk], "<i2")[5]] == [0, 1, 100, 101, 4, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError):
        buffer.add_periodic(5, T0, 10**6, [1.0], "f64")  # another type for the channel


def test_event_and_row_chunks():
    events = [(T0 + 250 * SECOND, 2, "app", "late", [1.5]), event(T0 + 5, 1, "app", "first", [1, 2])]
    chunks = event_chunks(events + [events[0]])  # an exact duplicate is dropped
    assert [(c.kind, c.channel_ids) for c in chunks] == [("events", ()), ("events", ())]  # 100 s windows
    decoded = [e for c in chunks for e in c.decode().events]
    assert [(e.timestamp, e.event_definition_id, e.app_name, e.status_text, list(e.raw_data)) for e in decoded] == [
        (T0 + 5, 1, "app", "first", [1.0, 2.0]),
        (T0 + 250 * SECOND, 2, "app", "late", [1.5]),
    ]
    assert event_chunks(events, start=T0 + 200 * SECOND)[0].start == T0 + 250 * SECOND

    times = T0 + np.arange(50, dtype=np.int64) * 10**8
    rows = row_chunks([1, 2], times, [np.arange(50), np.arange(50) * -1], ["s16", "f32"])
    assert rows and all(c.channel_ids == (1, 2) for c in rows)
    decoded = [r for c in rows for r in c.decode().row_data]
    assert [r.timestamp for r in decoded] == times.tolist()
    assert [struct.unpack("<hf", r.buffer) for r in decoded] == [(i, -float(i)) for i in range(50)]


def test_a_list_over_the_hard_limit_is_refused():
    with pytest.raises(ValueError, match="4 MiB"):
        periodic_chunks(1, 0, 1, np.zeros(700_000), grid=ChunkGrid(SECOND))  # 5.6 MB in one window


# --- Schema Mapping client helpers -----------------------------------------------------------------


def test_channel_expressions_for_the_schema_client():
    assert channel_expression([1, 10, 255]) == "1,A,FF"
    assert channel_expression(parse_channels("1-3,a")) == "1-3,A"
    assert channel_expression("0-") == "0-"
    mapping = schema_pb.SchemaMapping(field_mappings=[field_mapping("speed", 16, "s16", table="t")])
    assert fields(mapping) == [("speed", 16, "s16", {"table": "t"})]
    assert mapping.field_mappings[0].target_channel_data_type == schema_pb.TARGET_CHANNEL_DATA_TYPE_INT16


# --- the ASGI service in real server processes ----------------------------------------------------------

ADAPTER_MODULE = """
import asyncio
import itertools
import os
from rta_core.errors import NotFound
from rta_kit.chunking import event, event_chunks, periodic_chunks
from rta_kit.service import DataServiceApp

T0 = %d


class Adapter:
    def periodic_chunks(self, identity, channels, start, end, context):
        if identity.startswith("endless-"):
            try:
                for k in itertools.count():
                    yield from periodic_chunks(1, T0 + k * 10**10, 10**7, [0.5] * 1000)
            finally:  # closed by the service when the client goes away
                open(os.path.join(os.path.dirname(os.path.abspath(__file__)), identity + ".closed"), "w").close()
        if identity == "missing":
            raise NotFound("no such run")
        if identity == "fail-early":
            raise RuntimeError("secret details of the store")
        for channel in (1, 2, 3):
            if channel in channels:
                values = [channel * 1000 + i for i in range(3000)]
                for chunk in periodic_chunks(channel, T0, 10**7, values, "s32", start=start, end=end):
                    yield chunk
                    if identity == "fail-late":
                        raise RuntimeError("the store went away")

    async def timestamped_chunks(self, identity, channels, start, end):
        await asyncio.sleep(0)
        return []

    async def events(self, identity, start, end, context):
        # Echoes what the adapter was given: the decoded identity, the bounds and the token.
        status = [identity, repr((start, end)), context.authorization or ""]
        for chunk in event_chunks([event(T0 + i, i, "echo", text) for i, text in enumerate(status)]):
            yield chunk


app = DataServiceApp(Adapter())
"""


def _wait_until_serving(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {_output(process)}")
        try:
            status, _, _ = fetch(port, "/")
            if status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on port {port} within {timeout}s")


def fetch(port, path, method="GET", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _start(command, cwd, env=None, inherit=True):
    """A server process; its output goes to a log file (a pipe nobody reads would fill and block it)."""
    environment = {**(os.environ if inherit else {}), "PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}", **(env or {})}
    log = tempfile.NamedTemporaryFile("w+", prefix="kit-server-", suffix=".log", delete=False)
    process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log = log
    return process


def _output(process):
    process.log.flush()
    return Path(process.log.name).read_text()[-4000:]


def _stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.log.close()
    os.unlink(process.log.name)


@pytest.fixture(scope="module")
def adapter_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kit_adapter")
    (folder / "kit_test_adapter.py").write_text(ADAPTER_MODULE % T0)
    return folder


@pytest.fixture(scope="module")
def daphne_port(adapter_module):
    port = free_port()
    process = _start(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "kit_test_adapter:app"], adapter_module
    )
    try:
        _wait_until_serving(port, process)
        yield port
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def uvicorn_port(adapter_module):
    port = free_port()
    command = [sys.executable, "-m", "rta_kit.serve", "kit_test_adapter:app", "--port", str(port), "--no-access-log"]
    process = _start(command, adapter_module)
    try:
        _wait_until_serving(port, process)
        yield port
    finally:
        _stop(process)


def data_path(identity, kind, channels=None, query=""):
    tail = f"{kind}/{channels}" if channels is not None else kind
    return f"/rta/v2/data/{quote(identity, safe='')}/{tail}" + (f"?{query}" if query else "")


def echoed(port, identity, query="", headers=None):
    status, response_headers, body = fetch(port, data_path(identity, "events", query=query), headers=headers)
    assert status == 200, body
    assert response_headers["Content-Type"] == wire.MEDIA_TYPE
    return [e.status_text for c in wire.read_chunks(body) for e in c.decode("events").events]


AWKWARD = ["plain", "a/b c", "quote\"s 'single'", "100% sure", "k=v&x=y?z#f", "../up/..", "ünï/cödé", "+plus+", "%2F"]


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_identities_are_one_percent_encoded_segment_whatever_they_hold(server, request):
    port = request.getfixturevalue(f"{server}_port")
    for identity in AWKWARD:
        assert echoed(port, identity)[0] == identity


def test_periodic_data_streams_from_the_adapter(daphne_port):
    status, headers, body = fetch(daphne_port, data_path("run", "periodic", "1,3", "start=0"))
    assert status == 200 and headers["Content-Type"] == wire.MEDIA_TYPE
    chunks = wire.read_chunks(body)
    assert {c.compression for c in chunks} == {wire.COMPRESSION_LZ4}
    samples = decoded_samples("periodic", chunks, "<i4")
    assert sorted(samples) == [1, 3]
    for channel in (1, 3):
        assert samples[channel] == [(T0 + i * 10**7, channel * 1000 + i) for i in range(3000)]
    # Bounds reach the adapter, which keeps the whole chunks overlapping them.
    status, _, body = fetch(
        daphne_port, data_path("run", "periodic", "2", f"start={T0 + 15 * SECOND}&end={T0 + 15 * SECOND}")
    )
    (chunk,) = wire.read_chunks(body)
    assert (chunk.start, chunk.end) == (T0 + 10 * SECOND, T0 + 20 * SECOND - 10**7)
    assert echoed(daphne_port, "x", query="start=-5&end=7")[1] == "(-5, 7)"
    assert echoed(daphne_port, "x")[1] == "(None, None)"
    # An adapter without a kind serves none of it; one returning nothing serves an empty 200.
    assert fetch(daphne_port, data_path("run", "row", "1"))[::2] == (200, b"")
    assert fetch(daphne_port, data_path("run", "timestamped", "0-"))[::2] == (200, b"")


def test_the_authorization_header_reaches_the_adapter(daphne_port):
    assert echoed(daphne_port, "x", headers={"Authorization": "Bearer t0ken"})[2] == "Bearer t0ken"
    assert echoed(daphne_port, "x")[2] == ""


@pytest.mark.parametrize(
    "path, status, message",
    [
        (data_path("run", "periodic", "zz"), 400, "malformed channel expression"),
        (data_path("run", "periodic", "5-1"), 400, "reversed"),
        (data_path("run", "periodic", "1", "start=abc"), 400, "start must be an integer"),
        (data_path("run", "periodic", "1", "end=1.5"), 400, "end must be an integer"),
        (data_path("run", "periodic", "1", "start=1_000"), 400, "start must be an integer"),
        (data_path("run", "periodic", "1", f"start={2**63}"), 400, "int64"),
        (data_path("run", "periodic", "1", "start=5&end=4"), 400, "after end"),
        ("/rta/v2/data/%FF/events", 400, "UTF-8"),
        ("/rta/v2/data//events", 400, "empty"),
        (data_path("run", "scalar", "1"), 404, "not found"),
        ("/rta/v2/data/run/periodic", 404, "not found"),
        ("/rta/v2/data/a/b/periodic/1", 404, "not found"),  # an identity is ONE segment
        ("/rta/v2/sessions", 404, "not found"),
        (data_path("missing", "periodic", "1"), 404, "no such run"),
    ],
)
def test_bad_requests_are_json_errors(daphne_port, path, status, message):
    got, headers, body = fetch(daphne_port, path)
    assert got == status, body
    assert headers["Content-Type"] == "application/json"
    assert message in json.loads(body)["error"]


def test_root_methods_and_head(daphne_port):
    assert fetch(daphne_port, "/")[::2] == (200, b"Healthy")
    status, headers, body = fetch(daphne_port, data_path("run", "periodic", "1"), method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and "error" in json.loads(body)
    status, headers, body = fetch(daphne_port, data_path("run", "periodic", "1"), method="HEAD")
    assert (status, headers["Content-Type"], body) == (200, wire.MEDIA_TYPE, b"")
    assert fetch(daphne_port, data_path("run", "periodic", "zz"), method="HEAD")[0] == 400


def test_an_adapter_failing_before_the_first_byte_is_a_500_without_details(daphne_port):
    status, headers, body = fetch(daphne_port, data_path("fail-early", "periodic", "1"))
    assert status == 500 and headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert "adapter failed" in error and "secret" not in error
    assert fetch(daphne_port, "/")[0] == 200  # the server goes on


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_client_going_away_closes_the_adapters_iterator(server, request, adapter_module):
    port = request.getfixturevalue(f"{server}_port")
    identity = f"endless-{server}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", data_path(identity, "periodic", "1"))
    response = connection.getresponse()
    assert response.status == 200 and len(response.read1(65536)) > 0
    response.close()
    connection.close()
    closed = adapter_module / f"{identity}.closed"
    deadline = time.monotonic() + 30
    while not closed.exists():
        assert time.monotonic() < deadline, "the adapter's iterator was not closed"
        time.sleep(0.05)
    assert fetch(port, "/")[0] == 200


def _read_until_error(port, path):
    """Status, body bytes received, and the exception that ended the read (None if it ended cleanly)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        received = bytearray()
        try:
            while chunk := response.read1(65536):
                received += chunk
        except (http.client.IncompleteRead, ConnectionError) as exc:
            return response.status, bytes(received), exc
        return response.status, bytes(received), None
    finally:
        connection.close()


def test_an_adapter_failing_mid_response_aborts_it(uvicorn_port, daphne_port):
    # uvicorn (python -m rta_kit.serve): the connection is dropped, the chunked body never completes.
    status, body, error = _read_until_error(uvicorn_port, data_path("fail-late", "periodic", "1"))
    assert status == 200 and error is not None
    assert body.endswith(ABORT_FRAME)
    with pytest.raises(wire.ChunkFormatError):
        wire.read_chunks(body)
    # daphne cannot drop a started response: it ends after a frame no reader takes for data.
    status, body, error = _read_until_error(daphne_port, data_path("fail-late", "periodic", "1"))
    assert status == 200 and body.endswith(ABORT_FRAME)
    with pytest.raises(wire.ChunkFormatError):
        wire.read_chunks(body)
    assert fetch(daphne_port, "/")[0] == 200 and fetch(uvicorn_port, "/")[0] == 200


# --- the example CSV adapter, a separate process, with the Schema Mapping Service -----------------------

from tests.grpc_helpers import grpc_channel, grpc_server  # noqa: E402, F401  (fixtures)

db = pytest.mark.django_db(transaction=True)


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(c) for c in row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def csv_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("csv")
    root = base / "root"
    write_csv(
        root / "run 1.csv",
        ["time_ns", "speed", "rpm", "gear"],
        [(T0 + i * 10**7, round(100 + i * 0.25, 2), 5000 + i, i % 8) for i in range(2500)],
    )
    write_csv(
        root / "run 1.events.csv",
        ["time_ns", "event", "status", "lap"],
        [(T0 + SECOND, 1, "go", 1), (T0 + 2 * SECOND, "0x10", "lap", 2)],
    )
    irregular = T0 + np.cumsum(rng.integers(20, 500, 400)).astype(np.int64) * 10**6
    write_csv(
        root / "2024" / "lap's/run 2.csv",
        ["time_ms", "TOil", "TWater"],
        [(t // 10**6, 100 + i, "" if i % 7 == 0 else 80 + i / 4) for i, t in enumerate(irregular.tolist())],
    )
    (base / "secret.csv").write_text("time_ns,secret\n1,424242\n")
    (root / "link.csv").symlink_to(base / "secret.csv")
    (root / "linked").symlink_to(base, target_is_directory=True)
    return root


def auth_token(request):
    """A token for the in-process gRPC server when the suite runs with auth on (tests.auth_mode), else None."""
    from tests import auth_mode

    if not auth_mode.active():
        return None
    return request.getfixturevalue("_auth_on_for_the_session").token("rta.read rta.write", lifetime=3600)


@pytest.fixture(scope="module")
def csv_adapter(csv_root, grpc_server, request):  # noqa: F811
    _, grpc_port = grpc_server
    port = free_port()
    command = [
        sys.executable,
        str(EXAMPLE / "adapter.py"),
        "--root",
        str(csv_root),
        "--port",
        str(port),
        "--schema-mappings",
        f"127.0.0.1:{grpc_port}",
    ]
    token = auth_token(request)
    command += ["--schema-token", token] if token else []
    process = _start(command, ROOT)
    try:
        _wait_until_serving(port, process)
        yield port
    finally:
        _stop(process)


@pytest.fixture
def schemas(grpc_server):  # noqa: F811
    with SchemaMappingClient(f"127.0.0.1:{grpc_server[1]}") as client:
        yield client


def csv_read(port, identity, kind, channels=None, query=""):
    status, _, body = fetch(port, data_path(identity, kind, channels, query))
    assert status == 200, body
    return wire.read_chunks(body)


@db
def test_schema_mapping_client_every_call(schemas):
    assert schemas.get("csv", "nothing.csv") is None
    assert schemas.query("csv", "nothing.csv", [1]) is None
    assert not schemas.has("csv", "nothing.csv")
    mapping = schema_pb.SchemaMapping(
        properties={"folder": "x"},
        field_mappings=[field_mapping("a", 1), field_mapping("b", 0x1B, "u16")],
        event_mappings=[schema_pb.EventMapping(source_event="pit", target_event_app="app", target_event_id=3)],
    )
    schemas.put("csv", "q.csv", mapping)
    assert schemas.has("csv", "q.csv") and schemas.get("csv", "q.csv") == mapping
    queried = schemas.query("csv", "q.csv", parse_channels("1B"))
    assert fields(queried) == [("b", 0x1B, "u16", {})] and dict(queried.properties) == {"folder": "x"}
    assert list(queried.event_mappings) == []
    assert len(schemas.query("csv", "q.csv", "", events=True).event_mappings) == 1
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        schemas.query("csv", "q.csv", "zz")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    schemas.delete("csv", "q.csv")
    assert schemas.get("csv", "q.csv") is None


@db
def test_csv_files_without_a_mapping_serve_columns_in_order(csv_adapter, schemas):
    schemas.delete("csv", "run 1.csv")
    chunks = csv_read(csv_adapter, "run 1.csv", "periodic", "0-")
    samples = decoded_samples("periodic", chunks, "<f8")
    times = [T0 + i * 10**7 for i in range(2500)]
    assert samples[0] == [(t, round(100 + i * 0.25, 2)) for i, t in enumerate(times)]
    assert samples[1] == [(t, 5000.0 + i) for i, t in enumerate(times)]
    assert samples[2] == [(t, float(i % 8)) for i, t in enumerate(times)]
    check_chunk_rules(
        "periodic", [chunking.Chunk("periodic", tuple(c.channel_ids), c.start, c.end, c.payload) for c in chunks]
    )
    # A regular file has periodic channels only.
    assert csv_read(csv_adapter, "run 1.csv", "timestamped", "0-") == []
    # Bounds: whole chunks on the 10 s grid of 100 Hz data.
    some = csv_read(csv_adapter, "run 1.csv", "periodic", "1", f"start={T0 + 12 * SECOND}&end={T0 + 13 * SECOND}")
    assert [(c.start, c.end) for c in some] == [(T0 + 10 * SECOND, T0 + 20 * SECOND - 10**7)]
    events = [e for c in csv_read(csv_adapter, "run 1.csv", "events") for e in c.decode("events").events]
    assert [(e.timestamp, e.event_definition_id, e.app_name, e.status_text, list(e.raw_data)) for e in events] == [
        (T0 + SECOND, 1, "csv", "go", [1.0]),
        (T0 + 2 * SECOND, 16, "csv", "lap", [2.0]),
    ]


@db
def test_csv_files_with_a_mapping_serve_its_channels_and_types(csv_adapter, schemas):
    mapping = schema_pb.SchemaMapping(
        field_mappings=[field_mapping("rpm", 0x20, "u16"), field_mapping("gear", 0x21, "s8")],
        event_mappings=[schema_pb.EventMapping(source_event="0x10", target_event_app="laps", target_event_id=7)],
    )
    schemas.put("csv", "run 1.csv", mapping)
    try:
        chunks = csv_read(csv_adapter, "run 1.csv", "periodic", "0-")
        assert {c.channel_ids[0] for c in chunks} == {0x20, 0x21}  # "speed" is not mapped: not served
        rpm = decoded_samples("periodic", [c for c in chunks if c.channel_ids == [0x20]], "<u2")[0x20]
        gear = decoded_samples("periodic", [c for c in chunks if c.channel_ids == [0x21]], "<i1")[0x21]
        assert rpm == [(T0 + i * 10**7, 5000 + i) for i in range(2500)]
        assert gear == [(T0 + i * 10**7, i % 8) for i in range(2500)]
        assert csv_read(csv_adapter, "run 1.csv", "periodic", "0-1F") == []
        events = [e for c in csv_read(csv_adapter, "run 1.csv", "events") for e in c.decode("events").events]
        assert [(e.event_definition_id, e.app_name, e.status_text) for e in events] == [(7, "laps", "lap")]
    finally:
        schemas.delete("csv", "run 1.csv")


@db
def test_irregular_csv_files_serve_timestamped_channels(csv_adapter, csv_root):
    identity = "2024/lap's/run 2.csv"
    assert csv_read(csv_adapter, identity, "periodic", "0-") == []
    chunks = csv_read(csv_adapter, identity, "timestamped", "0-")
    samples = decoded_samples("timestamped", chunks, "<f8")
    lines = (csv_root / identity).read_text().splitlines()[1:]
    rows = [line.split(",") for line in lines]
    assert samples[0] == [(int(t) * 10**6, float(a)) for t, a, _ in rows]
    assert samples[1] == [(int(t) * 10**6, float(b)) for t, _, b in rows if b != ""]
    # Any bounds: the chunks are the same ones.
    whole = {(c.channel_ids[0], c.start): (c.end, c.payload) for c in chunks}
    mid = int(rows[len(rows) // 2][0]) * 10**6
    for c in csv_read(csv_adapter, identity, "timestamped", "0-", f"start={mid}&end={mid + SECOND}"):
        assert whole[(c.channel_ids[0], c.start)][0] == c.end


@db
@pytest.mark.parametrize(
    "identity",
    [
        "../secret.csv",
        "linked/secret.csv",  # a symbolic link to a folder outside the root
        "link.csv",  # a symbolic link to a file outside the root
        "/" + "secret.csv",
        "2024/../../secret.csv",
        "./run 1.csv",
        "run 1.events.csv",  # an events file is not a data identity
        "nothing.csv",
    ],
)
def test_nothing_outside_the_root_is_ever_opened(csv_adapter, identity):
    for kind, channels in (("periodic", "0-"), ("timestamped", "0-"), ("events", None)):
        status, _, body = fetch(csv_adapter, data_path(identity, kind, channels))
        assert status == 404, (identity, body)
        assert b"424242" not in body and json.loads(body) == {"error": "no such data identity"}
    # Written raw, unencoded, the path is not one identity segment at all.
    assert fetch(csv_adapter, "/rta/v2/data/../secret.csv/events")[0] == 404


def test_the_example_lists_data_files_without_following_links(csv_root):
    sys.path.insert(0, str(EXAMPLE))
    try:
        import csvfiles
    finally:
        sys.path.remove(str(EXAMPLE))
    assert csvfiles.data_files(csv_root) == ["2024/lap's/run 2.csv", "run 1.csv"]
    for identity in ("a//b.csv", "", "a/./b.csv", "a/../b.csv", "nul\0.csv"):
        with pytest.raises(NotFound):
            csvfiles.split_identity(identity)


# --- end to end: the server's gateway reading sessions bound to CSV files from the example adapter ------


def _database_url():
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@db
def test_the_gateway_serves_sessions_bound_to_csv_files(
    postgres, csv_root, csv_adapter, grpc_server, tmp_path, request
):  # noqa: F811
    # The example's indexer publishes a session, config, schema mapping and data binding per file
    # (to the in-process gRPC server: the same database as the server process below).
    command = [
        sys.executable,
        str(EXAMPLE / "index.py"),
        "--root",
        str(csv_root),
        "--grpc",
        f"127.0.0.1:{grpc_server[1]}",
    ]
    token = auth_token(request)
    indexed = subprocess.run(command + (["--token", token] if token else []), capture_output=True, text=True, cwd=ROOT)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    sys.path.insert(0, str(EXAMPLE))
    try:
        from index import session_identity
    finally:
        sys.path.remove(str(EXAMPLE))
    assert f"run 1.csv: session {session_identity('run 1.csv')}" in indexed.stdout

    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RTA_")},
        "RTA_DATABASE_URL": _database_url(),
        "RTA_DATA_PATH": str(tmp_path / "server"),
        "RTA_REDIS_URL": "",
        "RTA_LOG_LEVEL": "WARNING",
        "RTA_DATA_SERVICES": f"csv=http://127.0.0.1:{csv_adapter}/",
    }
    command = [sys.executable, "manage.py", "serve", "--bind", "127.0.0.1", "--http-port", str(port), "--no-grpc"]
    server = _start(command, ROOT, environment, inherit=False)
    try:
        deadline = time.monotonic() + 60
        while True:  # /health is 200 once the server is up and the data service answers
            try:
                if fetch(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, _output(server)
            time.sleep(0.2)

        session = session_identity("run 1.csv")
        status, _, body = fetch(port, f"/rta/v2/sessions/{session}")
        assert status == 200, body
        detail = json.loads(body)
        assert detail["identifier"] == "run 1" and len(detail["configBindings"]) == 1
        status, _, body = fetch(port, f"/rta/v2/sessions/{session}/data/periodic/0-")
        assert status == 200, body
        served = wire.read_chunks(body)
        samples = decoded_samples("periodic", served, "<f8")
        times = [T0 + i * 10**7 for i in range(2500)]
        assert samples[1] == [(t, 5000.0 + i) for i, t in enumerate(times)]
        assert samples[0] == [(t, round(100 + i * 0.25, 2)) for i, t in enumerate(times)]
        # No transformation: the adapter's chunks, boundaries and bytes as the adapter serves them.
        direct = csv_read(csv_adapter, "run 1.csv", "periodic", "0-")
        key = lambda c: (c.channel_ids[0], c.start)  # noqa: E731
        assert sorted((key(c), c.end, c.payload) for c in served) == sorted((key(c), c.end, c.payload) for c in direct)
        status, _, body = fetch(port, f"/rta/v2/sessions/{session}/data/events")
        assert [e.status_text for c in wire.read_chunks(body) for e in c.decode("events").events] == ["go", "lap"]

        irregular = session_identity("2024/lap's/run 2.csv")
        status, _, body = fetch(port, f"/rta/v2/sessions/{irregular}/data/timestamped/1")
        assert status == 200, body
        lines = (csv_root / "2024" / "lap's" / "run 2.csv").read_text().splitlines()[1:]
        expected = [(int(t) * 10**6, float(b)) for t, _, b in (line.split(",") for line in lines) if b != ""]
        assert decoded_samples("timestamped", wire.read_chunks(body), "<f8")[1] == expected
    finally:
        _stop(server)
