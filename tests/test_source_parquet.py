"""The Parquet data source and ``manage.py index_parquet``, on real Parquet files the tests write.

Files are indexed with the command, then read through the session REST
endpoint and checked sample by sample against the values written: types,
the periodic/timestamped rule, stable chunk boundaries, folders read as one
series in time order, row groups skipped by their statistics, and paths
outside the root (``..``, absolute paths, symlinks) refused.
"""

import os
from io import StringIO
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from config_app.services import schema_mappings
from data_app.services import publish
from data_app.sources import parquet_files, registry
from rta_core.errors import NotFound
from sessions_app.models import DataBinding, Session
from sessions_app.services.updates import create_or_update_session
from tests.test_data_bindings import T0, S, binding, fetch, served

pytestmark = pytest.mark.django_db
MS = 1_000_000
SOURCE = "parquet"


# --- files -----------------------------------------------------------------------------------


def run_table(seconds=60, seed=3):
    """1 kHz ``fast`` (f64), 10 Hz ``slow`` (int16, a 2 s hole as nulls), irregular ``irr`` (f32)."""
    rng = np.random.default_rng(seed)
    n = seconds * 1000
    times = T0 + np.arange(n, dtype=np.int64) * MS
    fast = np.sin(np.arange(n) / 50.0)
    slow = np.full(n, None, dtype=object)
    slow[::100] = (np.arange(n // 100) * 7 - 300).astype(np.int16)
    slow[20_000:22_000] = None
    irr = np.full(n, None, dtype=object)
    picks = np.cumsum(rng.integers(1, 40, size=n))
    picks = picks[picks < n]
    irr[picks] = rng.normal(size=len(picks)).astype(np.float32)
    return pa.table(
        {
            "time": pa.array(times, pa.timestamp("ns")),
            "fast": pa.array(fast, pa.float64()),
            "slow": pa.array(list(slow), pa.int16()),
            "irr": pa.array(list(irr), pa.float32()),
        }
    )


def expected(table, field, channel, dtype, offset=0, start=None, end=None):
    """``(channel, time, value bytes)`` of a column's present samples, as ``served`` returns them."""
    times = table.column("time").cast(pa.int64()).to_numpy()
    column = table.column(field)
    values = column.to_numpy(zero_copy_only=False)
    present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False))
    out = []
    for t, v in zip(times[present], values[present]):
        if (start is None or t >= start) and (end is None or t <= end):
            out.append((channel, int(t) + offset, np.asarray([v], dtype=dtype).tobytes()))
    return sorted(out)


def of(samples, channel):
    return [s for s in samples if s[0] == channel]


@pytest.fixture
def root(tmp_path, settings):
    folder = tmp_path / "parquet-root"
    folder.mkdir()
    settings.RTA_PARQUET_ROOT = str(folder)
    settings.RTA_PARQUET_SOURCE = SOURCE
    yield folder
    registry.configured()  # the next settings drop these sources


@pytest.fixture
def run(root):
    """``runs/run1.parquet`` (row groups of 7000 rows) and the table written."""
    (root / "runs").mkdir()
    (root / "runs" / "notes.txt").write_text("not data")
    table = run_table()
    pq.write_table(table, root / "runs" / "run1.parquet", row_group_size=7000)
    return table


def index(**options):
    out = StringIO()
    call_command("index_parquet", stdout=out, **options)
    return out.getvalue()


def session_of(identity):
    return publish.session_identity(SOURCE, identity)


def source():
    return registry.configured()[SOURCE]


# --- serving ---------------------------------------------------------------------------------


def test_an_indexed_file_serves_every_sample_with_its_type_and_kind(api, run):
    index()
    session = session_of("runs/run1.parquet")
    timestamped = served("timestamped", fetch(api, session, "timestamped", "0-2"))
    assert of(timestamped, 0) == expected(run, "fast", 0, "<f8")
    assert of(timestamped, 1) == expected(run, "slow", 1, "<i2"), "int16 stays int16"
    assert of(timestamped, 2) == expected(run, "irr", 2, "<f4"), "float32 stays float32"
    periodic = served("periodic", fetch(api, session, "periodic", "0-2"))
    assert of(periodic, 0) == expected(run, "fast", 0, "<f8")
    assert of(periodic, 1) == expected(run, "slow", 1, "<i2"), "regular with a hole: periodic runs"
    assert of(periodic, 2) == [], "an irregular field serves no periodic data"


def test_the_indexer_publishes_types_intervals_range_and_properties(api, run):
    index()
    identity = "runs/run1.parquet"
    mapping = schema_mappings.get_schema_mapping(SOURCE, identity)
    fields = [
        (f["source_field"], f["target_channel"], f["target_channel_data_type"], f["properties"].get("interval"))
        for f in mapping["field_mappings"]
    ]
    assert fields == [
        ("fast", 0, "DOUBLE64", str(MS)),
        ("slow", 1, "INT16", str(100 * MS)),
        ("irr", 2, "FLOAT32", None),
    ]
    assert mapping["properties"]["time_column"] == "time"
    session = Session.objects.get(identity=session_of(identity))
    assert (session.start_time, session.end_time) == (T0, T0 + 60 * S - MS)
    assert session.identifier == "run1.parquet"


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_chunk_boundaries_do_not_depend_on_the_request(api, run, kind):
    index()
    session = session_of("runs/run1.parquet")
    whole = {(c.start, c.end, tuple(c.channel_ids)) for c in fetch(api, session, kind, "0-2")}
    start, end = T0 + 12_345 * MS + 17, T0 + 31_234 * MS + 5  # both inside chunks, between row groups
    part = fetch(api, session, kind, "0-2", start=start, end=end)
    assert part, "the range holds data"
    for chunk in part:
        assert (chunk.start, chunk.end, tuple(chunk.channel_ids)) in whole
        assert chunk.end >= start and chunk.start <= end
    fast = [c for c in part if c.channel_ids == [0]]
    low, high = min(c.start for c in fast), max(c.end for c in fast)
    assert of(served(kind, part), 0) == expected(run, "fast", 0, "<f8", start=low, end=high)


def test_a_bounded_read_decodes_only_the_row_groups_it_covers(api, run, monkeypatch):
    index()
    decoded = []
    real = parquet_files.decode

    def counting(opened, index, row_group, names):
        decoded.append(row_group)
        return real(opened, index, row_group, names)

    monkeypatch.setattr(parquet_files, "decode", counting)
    session = session_of("runs/run1.parquet")
    fetch(api, session, "periodic", "0", start=T0 + 15 * S, end=T0 + 15 * S + 500 * MS)
    assert decoded and set(decoded) <= {1, 2}, "15.0-15.5 s lies in the row groups of 7-14 s and 14-21 s"


def test_a_folder_is_one_series_in_time_order(api, root, caplog):
    table = run_table(seconds=40, seed=9).select(["time", "fast", "irr"])
    folder = root / "day"
    folder.mkdir()
    pq.write_table(table.slice(20_000), folder / "a.parquet")  # the later half sorts first by name
    pq.write_table(table.slice(0, 20_000), folder / "b.parquet")
    slow = pa.table(
        {"time": pa.array(T0 + np.arange(200) * 200 * MS, pa.timestamp("ns")), "rate": np.arange(200) * 0.5}
    )
    pq.write_table(slow, folder / "rate.parquet")
    (folder / "writing.parquet").write_bytes(b"PAR1 being written")  # skipped: the rest is still served
    index()
    session = session_of("day")
    samples = served("timestamped", fetch(api, session, "timestamped", "0-2"))
    assert of(samples, 0) == expected(table, "fast", 0, "<f8")
    assert of(samples, 1) == expected(table, "irr", 1, "<f4")
    assert of(samples, 2) == expected(slow, "rate", 2, "<f8"), "a file with columns of its own is its own group"
    periodic = served("periodic", fetch(api, session, "periodic", "0-2", start=T0 + 19 * S, end=T0 + 21 * S))
    assert {s[0] for s in periodic} == {0, 2}
    assert not Session.objects.filter(identity=session_of("day/a.parquet")).exists(), "the folder is the identity"
    assert "cannot be read and is skipped" in caplog.text and "writing" not in caplog.text


def test_time_column_and_unit_properties(api, root):
    times_ms = 1_700_000_000_000 + np.arange(3000, dtype=np.int64) * 20
    table = pa.table({"unix_time": times_ms, "speed": np.arange(3000) * 0.25, "gear": (np.arange(3000) % 8)})
    pq.write_table(table, root / "laps.parquet")
    index(time_column="unix_time", time_unit="ms")
    session = session_of("laps.parquet")
    mapping = schema_mappings.get_schema_mapping(SOURCE, "laps.parquet")
    assert mapping["properties"] == {"time_column": "unix_time", "time_unit": "ms"}
    samples = served("periodic", fetch(api, session, "periodic", "0-1"))
    assert of(samples, 0) == [
        (0, int(t) * MS, np.float64(v).tobytes()) for t, v in zip(times_ms, np.arange(3000) * 0.25)
    ]
    assert of(samples, 1) == [(1, int(t) * MS, np.float64(v).tobytes()) for t, v in zip(times_ms, np.arange(3000) % 8)]


def test_the_files_metadata_names_the_session_and_gives_its_details(api, root):
    table = run_table(seconds=2).replace_schema_metadata({"identifier": "Run 7", "Driver": "A", "pandas": "{...}"})
    pq.write_table(table, root / "meta.parquet")
    index()
    session = Session.objects.get(identity=session_of("meta.parquet"))
    assert session.identifier == "Run 7"
    assert session.details.get("Driver") == "A" and "pandas" not in session.details


def test_a_float_time_column_in_seconds(api, root):
    (root / "float").mkdir()
    seconds = 1_700_000_000 + np.arange(500) * 0.02  # 50 Hz, float seconds
    pq.write_table(pa.table({"t": seconds, "v": np.arange(500, dtype=np.float32)}), root / "float" / "f.parquet")
    index(root=str(root / "float"), time_column="t", time_unit="s")
    samples = served("periodic", fetch(api, session_of("float"), "periodic", "0"))
    times = np.rint(seconds * 1e9).astype(np.int64)
    assert samples == [(0, int(t), np.float32(i).tobytes()) for i, t in enumerate(times)]


def test_reindexing_updates_and_never_duplicates(api, run, root):
    index()
    index()
    session = session_of("runs/run1.parquet")
    assert Session.objects.filter(identity=session).count() == 1
    assert DataBinding.objects.filter(session__identity=session).count() == 1
    longer = run_table(seconds=90)
    source().prepare("runs/run1.parquet")  # the footer is cached now
    pq.write_table(longer, root / "runs" / "run1.parquet", row_group_size=7000)
    index()
    assert Session.objects.get(identity=session).end_time == T0 + 90 * S - MS
    assert Session.objects.filter(identity__in=[session_of("runs/run1.parquet")]).count() == 1
    samples = served("timestamped", fetch(api, session, "timestamped", "0", start=T0 + 80 * S))
    assert samples == expected(longer, "fast", 0, "<f8", start=T0 + 80 * S), "a rewritten file is read again"


# --- refusing ----------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path, root):
    """A readable Parquet file and folder outside the root, and symlinks to them inside it."""
    secret = tmp_path / "secret"
    secret.mkdir()
    pq.write_table(run_table(seconds=2), secret / "secret.parquet")
    os.symlink(secret / "secret.parquet", root / "link.parquet")
    os.symlink(secret, root / "linked")
    os.mkfifo(root / "pipe.parquet")  # opening it for reading would wait for a writer
    return secret


def refused_identities(root, secret):
    return [
        "../secret/secret.parquet",
        "runs/../../secret/secret.parquet",
        str(secret / "secret.parquet"),
        str(root) + "/../secret/secret.parquet",
        "link.parquet",
        "pipe.parquet",
        "linked",
        "linked/secret.parquet",
        "runs/notes.txt",
        "nothing.parquet",
        "",
        ".",
        "/",
    ]


def test_paths_outside_the_root_are_refused_as_no_data(api, run, root, outside):
    for identity in refused_identities(root, outside):
        with pytest.raises(NotFound) as refused:
            list(source().prepare(identity).chunks("timestamped"))
        assert "secret" not in refused.value.message and str(root) not in refused.value.message
    for i, identity in enumerate(refused_identities(root, outside)[:-3]):
        session = f"refused-{i}"
        create_or_update_session(session, [("set_data_bindings", [{**binding(identity), "source": SOURCE}])])
        assert fetch(api, session, "timestamped", "0-") == [], identity
    index()
    assert not Session.objects.filter(identity=session_of("link.parquet")).exists(), "symlinks are not indexed"
    assert not Session.objects.filter(identity=session_of("linked")).exists()


def test_the_exposed_data_service_serves_and_refuses(api, run, root, outside, settings):
    settings.RTA_EXPOSE_DATA_SERVICE = True
    assert api.get(f"/rta/v2/sources/{SOURCE}/").status_code == 200
    url = f"/rta/v2/sources/{SOURCE}/rta/v2/data/{quote('runs/run1.parquet', safe='')}/timestamped/0"
    response = api.get(url, {"start": T0, "end": T0 + S - 1})
    assert response.status_code == 200
    from rta_kit import wire

    samples = served("timestamped", wire.read_chunks(b"".join(response.streaming_content)))
    assert [s for s in samples if s[1] < T0 + S] == expected(run, "fast", 0, "<f8", end=T0 + S - 1)
    for identity in refused_identities(root, outside)[:-3]:
        url = f"/rta/v2/sources/{SOURCE}/rta/v2/data/{quote(identity, safe='')}/timestamped/0"
        response = api.get(url)
        assert response.status_code == 404, identity
        assert "secret" not in response.content.decode() and str(root) not in response.content.decode()


def test_a_broken_file_is_a_store_failure_naming_no_path(api, root, settings):
    (root / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    settings.RTA_EXPOSE_DATA_SERVICE = True
    response = api.get(f"/rta/v2/sources/{SOURCE}/rta/v2/data/broken.parquet/timestamped/0")
    assert response.status_code == 502
    assert "broken" not in response.content.decode() and str(root) not in response.content.decode()


def test_health_reports_a_missing_root(api, root):
    assert api.get("/health").status_code == 200
    root.rename(root.with_name("moved"))
    response = api.get("/health")
    assert response.status_code == 503 and f"data source {SOURCE}" in response.content.decode()
    assert str(root) not in response.content.decode()
