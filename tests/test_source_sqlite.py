"""The SQLite data source (``data_app.sources.sqlite``) and ``manage.py index_sqlite``, on real SQLite files.

Files in the toolkit example's layout are made here, indexed with the
command, and read back through the session REST endpoint (the gateway
routes the binding to the source in-process): every sample is checked
against what was written, with the chunk, kind and type rules, the root's
scope (``..``, symlinks, absolute paths elsewhere) and the exposed endpoint.
"""

import os
import sqlite3
from urllib.parse import quote

import numpy as np
import pytest
from django.core.management import call_command

from config_app.models import SchemaMapping
from config_app.services import schema_mappings
from data_app.services import publish
from data_app.sources import registry
from rta_core.errors import NotFound
from rta_core.timeutil import parse_timestamp
from sessions_app.models import DataBinding, Session
from sessions_app.services.updates import create_or_update_session
from tests.test_data_bindings import T0, fetch, served
from tests.test_sources_series import PIT_EVENT

pytestmark = pytest.mark.django_db
MS = 1_000_000
START_MS = T0 // MS + 123  # not on any window boundary
SECONDS = 300
SOURCE = "sqlite"
TIMESTAMP = "2023-11-14T22:13:20.1234567+01:00"
REGULAR = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")


def make_file(path, seed=1, seconds=SECONDS, irregular=True, holes=False):
    """A file as the example's generator writes it (+ an irregular table); ``{field: (times ns, values)}``."""
    rng = np.random.default_rng(seed)
    written = {}
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE [properties]([key] TEXT PRIMARY KEY NOT NULL, [value] TEXT NOT NULL)")
        properties = {"$timestamp": TIMESTAMP, "$identifier": f"SQLite {os.path.basename(path)}", "file": "x"}
        db.executemany("INSERT INTO properties VALUES (?, ?)", properties.items())
        for table, step, names in (("samples_100", 10, REGULAR[:3]), ("samples_50", 20, REGULAR[3:])):
            columns = ", ".join(f"[{n}] DOUBLE" for n in names)
            db.execute(f"CREATE TABLE [{table}]([unix_time] INTEGER(8) PRIMARY KEY ASC NOT NULL, {columns})")
            ms = START_MS + np.arange(0, seconds * 1000, step, dtype=np.int64)
            values = {n: rng.normal(size=len(ms)) * 100 for n in names}
            if holes and table == "samples_100":  # NULLs first (beyond the driver's type inference) and a hole
                values["beta"][:3000] = np.nan
                values["beta"][9000:9500] = np.nan
            rows = zip(ms.tolist(), *[[None if np.isnan(v) else v for v in values[n].tolist()] for n in names])
            db.executemany(f"INSERT INTO [{table}] VALUES (?{', ?' * len(names)})", rows)
            for n in names:
                present = ~np.isnan(values[n])
                written[n] = (ms[present] * MS, values[n][present])
        if irregular:
            ms = START_MS + np.cumsum(rng.integers(1, 50, size=seconds * 20))
            irr = rng.normal(size=len(ms))
            db.execute("CREATE TABLE samples_irr(unix_time INTEGER PRIMARY KEY, irr REAL, note TEXT)")
            db.executemany("INSERT INTO samples_irr VALUES (?, ?, 'n')", zip(ms.tolist(), irr.tolist()))
            written["irr"] = (ms * MS, irr)
    return written


@pytest.fixture
def root(tmp_path, settings):
    folder = tmp_path / "sqlite-root"
    folder.mkdir()
    settings.RTA_SQLITE_ROOT = str(folder)
    settings.RTA_SQLITE_SOURCE = SOURCE
    return folder


@pytest.fixture
def indexed(root):
    """Two files (one in a subfolder) indexed: ``{identity: written}``."""
    (root / "day 2").mkdir()
    files = {"000.sqlite": make_file(root / "000.sqlite"), "day 2/001.sqlite": make_file(root / "day 2/001.sqlite", 2)}
    call_command("index_sqlite", stdout=open(os.devnull, "w"))
    return files


def expected(written, fields, data_type="<f8", start=None, end=None):
    """Comparable samples of ``fields`` (``{name: channel}``), as ``served`` returns them."""
    out = []
    for name, channel in fields.items():
        times, values = written[name]
        keep = (times >= (start if start is not None else times.min())) & (times <= (end or times.max()))
        raw = np.asarray(values[keep], dtype=data_type)
        out += [(channel, int(t), raw[i : i + 1].tobytes()) for i, t in enumerate(times[keep])]
    return sorted(out)


def session_of(identity):
    return publish.session_identity(SOURCE, identity)


ALL = {name: i for i, name in enumerate((*REGULAR, "irr"))}


def test_the_indexer_publishes_each_file_and_every_sample_is_served(api, indexed):
    for identity, written in indexed.items():
        session = Session.objects.get(identity=session_of(identity))
        assert session.identifier == f"SQLite {os.path.basename(identity)}"
        assert session.timestamp_ns == parse_timestamp(TIMESTAMP).ns
        assert (session.start_time, session.end_time) == (START_MS * MS, max(int(t[-1]) for t, _ in written.values()))
        assert session.details["file"] == "x" and "$identifier" not in session.details
        binding = DataBinding.objects.get(session=session)
        assert (binding.source, binding.identity) == (SOURCE, identity), "identities are relative to the root"
        timestamped = served("timestamped", fetch(api, session.identity, "timestamped", "0-6"))
        assert timestamped == expected(written, ALL)
    periodic = served("periodic", fetch(api, session_of("000.sqlite"), "periodic", "0-6"))
    assert periodic == expected(indexed["000.sqlite"], {n: ALL[n] for n in REGULAR}), "irregular: no periodic data"


def test_the_generated_mapping_and_config_describe_the_file(indexed):
    mapping = schema_mappings.get_schema_mapping(SOURCE, "000.sqlite")
    fields = [
        (f["source_field"], f["properties"].get("table"), f["properties"].get("interval"))
        for f in mapping["field_mappings"]
    ]
    assert fields == [
        *[(n, "samples_100", str(10 * MS)) for n in REGULAR[:3]],
        *[(n, "samples_50", str(20 * MS)) for n in REGULAR[3:]],
        ("irr", "samples_irr", None),
    ], "text columns are not fields; regular tables carry their interval"


def test_indexing_again_updates_and_never_duplicates(api, root):
    make_file(root / "000.sqlite", irregular=False)
    for _ in range(2):
        call_command("index_sqlite", stdout=open(os.devnull, "w"))
    assert Session.objects.filter(identity=session_of("000.sqlite")).count() == 1
    assert DataBinding.objects.filter(session__identity=session_of("000.sqlite")).count() == 1
    assert SchemaMapping.objects.filter(data_source=SOURCE).count() == 1
    assert Session.objects.count() == 1
    assert served("timestamped", fetch(api, session_of("000.sqlite"), "timestamped", "0"))
    os.unlink(root / "000.sqlite")  # replaced by a shorter file: read afresh, the session updated
    written = make_file(root / "000.sqlite", seed=9, seconds=30, irregular=False)
    call_command("index_sqlite", stdout=open(os.devnull, "w"))
    session = Session.objects.get()
    assert session.end_time == int(written["alpha"][0][-1])
    assert served("timestamped", fetch(api, session.identity, "timestamped", "0")) == expected(written, {"alpha": 0})


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_bounds_inside_chunks_leave_chunk_boundaries_unchanged(api, indexed, kind):
    session = session_of("000.sqlite")
    whole = {(c.start, c.end, tuple(c.channel_ids)) for c in fetch(api, session, kind, "0-6")}
    start, end = START_MS * MS + 61_234 * MS + 7, START_MS * MS + 187_654 * MS + 3
    part = fetch(api, session, kind, "0-6", start=start, end=end)
    assert len(part) > 6
    for chunk in part:
        assert (chunk.start, chunk.end, tuple(chunk.channel_ids)) in whole
        assert chunk.end >= start and chunk.start <= end
    fields = {n: ALL[n] for n in (REGULAR if kind == "periodic" else ALL)}
    inside = [s for s in served(kind, part) if start <= s[1] <= end]
    assert inside == expected(indexed["000.sqlite"], fields, start=start, end=end)


def test_a_mapping_picks_tables_time_columns_and_types(api, root):
    written = make_file(root / "000.sqlite", irregular=False)
    with sqlite3.connect(root / "000.sqlite") as db:  # a table of its own layout: µs times in another column
        db.execute("CREATE TABLE ticks(t_us INTEGER PRIMARY KEY, level INTEGER)")
        db.executemany(
            "INSERT INTO ticks VALUES (?, ?)", [(START_MS * 1000 + i * 500, i % 200 - 100) for i in range(999)]
        )
    schema_mappings.put_schema_mapping(
        SOURCE,
        "000.sqlite",
        {
            "field_mappings": [
                {"source_field": "gamma", "target_channel": 4, "properties": {"table": "samples_100"}},
                {"source_field": "delta", "target_channel": 5, "target_channel_data_type": "FLOAT32"},
                {
                    "source_field": "level",
                    "target_channel": 6,
                    "target_channel_data_type": "INT16",
                    "properties": {"table": "ticks", "time_column": "t_us", "time_unit": "us"},
                },
                {"source_field": "nope", "target_channel": 7, "properties": {"table": "samples_100"}},
            ]
        },
    )
    create_or_update_session("mapped", [("set_data_bindings", [{"source": SOURCE, "identity": "000.sqlite"}])])
    samples = served("timestamped", fetch(api, "mapped", "timestamped", "0-F"))
    levels = (START_MS * MS + np.arange(999, dtype=np.int64) * 500_000, np.arange(999) % 200 - 100.0)
    assert samples == sorted(
        expected(written, {"gamma": 4})
        + expected(written, {"delta": 5}, "<f4")
        + expected({"level": levels}, {"level": 6}, "<i2")
    )
    periodic = served("periodic", fetch(api, "mapped", "periodic", "6"))
    assert periodic == expected({"level": levels}, {"level": 6}, "<i2"), "500 µs ticks are regular"


def test_two_tables_may_have_a_column_of_the_same_name(api, root):
    make_file(root / "twin.sqlite", irregular=False)
    with sqlite3.connect(root / "twin.sqlite") as db:  # "alpha" again, in a table of its own at 1 Hz
        db.execute("CREATE TABLE slow(unix_time INTEGER PRIMARY KEY, alpha REAL)")
        db.executemany("INSERT INTO slow VALUES (?, ?)", [(START_MS + i * 1000, float(i)) for i in range(60)])
    schema_mappings.put_schema_mapping(
        SOURCE,
        "twin.sqlite",
        {
            "field_mappings": [
                {"source_field": "alpha", "target_channel": 1, "properties": {"table": "samples_100"}},
                {"source_field": "alpha", "target_channel": 2, "properties": {"table": "slow"}},
            ]
        },
    )
    create_or_update_session("twin", [("set_data_bindings", [{"source": SOURCE, "identity": "twin.sqlite"}])])
    samples = served("timestamped", fetch(api, "twin", "timestamped", "2"))
    slow = (START_MS * MS + np.arange(60, dtype=np.int64) * 1000 * MS, np.arange(60, dtype=np.float64))
    assert samples == expected({"alpha": slow}, {"alpha": 2}), "each mapped field reads its own table"
    assert len(served("timestamped", fetch(api, "twin", "timestamped", "1"))) == SECONDS * 100


def test_nulls_are_missing_samples(api, root):
    written = make_file(root / "holes.sqlite", holes=True, irregular=False)
    call_command("index_sqlite", stdout=open(os.devnull, "w"))
    session = session_of("holes.sqlite")
    assert served("timestamped", fetch(api, session, "timestamped", "1")) == expected(written, {"beta": 1})
    periodic = served("periodic", fetch(api, session, "periodic", "1"))
    assert periodic == expected(written, {"beta": 1}), "a regular field with holes stays periodic"


def test_paths_outside_the_root_and_injections_are_refused(api, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    make_file(outside / "secret.sqlite", irregular=False)
    make_file(root / "000.sqlite", irregular=False)
    os.symlink(outside / "secret.sqlite", root / "link.sqlite")
    os.symlink(outside, root / "linked-folder")
    refused = [
        "../outside/secret.sqlite",
        "day/../../outside/secret.sqlite",
        str(outside / "secret.sqlite"),
        "link.sqlite",
        "linked-folder/secret.sqlite",
        "/etc/passwd",
        ".",
        "000.sqlite'; DROP TABLE samples_100; --",
        "000.sqlite%",
    ]
    source = registry.configured()[SOURCE]
    for identity in refused:
        with pytest.raises(NotFound):
            source.resolve(identity)
        session = f"refused-{refused.index(identity)}"
        create_or_update_session(session, [("set_data_bindings", [{"source": SOURCE, "identity": identity}])])
        assert fetch(api, session, "timestamped", "0-") == [], identity
    assert not any(str(outside) in key[0] for key in source._idle), "nothing outside the root was opened"
    # Names from a mapping are identifiers checked against the file's schema: an injection is no field.
    schema_mappings.put_schema_mapping(
        SOURCE,
        "000.sqlite",
        {
            "field_mappings": [
                {
                    "source_field": "alpha",
                    "target_channel": 0,
                    "properties": {"table": 'samples_100"; DROP TABLE properties; --'},
                }
            ]
        },
    )
    create_or_update_session("injected", [("set_data_bindings", [{"source": SOURCE, "identity": "000.sqlite"}])])
    assert fetch(api, "injected", "timestamped", "0-") == []
    with sqlite3.connect(root / "000.sqlite") as db:
        assert db.execute("SELECT count(*) FROM properties").fetchone()[0] == 3
        assert db.execute("SELECT count(*) FROM samples_100").fetchone()[0] == SECONDS * 100
    # An absolute path under the root is the same file as its relative form.
    create_or_update_session(
        "absolute", [("set_data_bindings", [{"source": SOURCE, "identity": str(root / "000.sqlite")}])]
    )
    assert len(served("timestamped", fetch(api, "absolute", "timestamped", "0"))) == SECONDS * 100


def test_the_source_is_exposed_as_a_data_service(api, indexed, settings):
    identity = "day 2/001.sqlite"
    url = f"/rta/v2/sources/{SOURCE}/rta/v2/data/{quote(identity, safe='')}/timestamped/3"
    assert api.get(url).status_code == 404, "not exposed unless asked"
    settings.RTA_EXPOSE_DATA_SERVICE = True
    assert api.get(f"/rta/v2/sources/{SOURCE}/").status_code == 200
    response = api.get(url)
    assert response.status_code == 200
    from rta_kit import wire

    chunks = wire.read_chunks(b"".join(response.streaming_content))
    assert served("timestamped", chunks) == expected(indexed[identity], {"delta": 3})
    outside = api.get(f"/rta/v2/sources/{SOURCE}/rta/v2/data/{quote('../x.sqlite', safe='')}/timestamped/0")
    assert outside.status_code in (200, 404) and b"x.sqlite" not in outside.content


def test_health_reports_the_root(api, root):
    assert api.get("/health").status_code == 200
    root.rmdir()
    response = api.get("/health")
    assert response.status_code == 503 and f"data source {SOURCE}" in response.content.decode()
    assert str(root) not in response.content.decode()


def test_the_indexer_stays_under_the_root(root, tmp_path):
    from django.core.management.base import CommandError

    for folder in ("a", "b"):
        (root / folder).mkdir()
        make_file(root / folder / "run.sqlite", seconds=5, irregular=False)
    os.symlink(tmp_path, root / "escape")  # a folder symlink leading out: its files are not indexed
    make_file(tmp_path / "outside.sqlite", seconds=5, irregular=False)
    with pytest.raises(CommandError):
        call_command("index_sqlite", "--root", str(tmp_path), stdout=open(os.devnull, "w"))
    call_command("index_sqlite", "--root", str(root / "a"), stdout=open(os.devnull, "w"))
    assert [b.identity for b in DataBinding.objects.all()] == ["a/run.sqlite"]
    call_command("index_sqlite", stdout=open(os.devnull, "w"))
    assert sorted(b.identity for b in DataBinding.objects.all()) == ["a/run.sqlite", "b/run.sqlite"]


def test_without_a_mapping_every_numeric_column_is_a_channel_in_schema_order(api, root):
    written = make_file(root / "plain.sqlite", seconds=60)
    create_or_update_session("plain", [("set_data_bindings", [{"source": SOURCE, "identity": "plain.sqlite"}])])
    assert served("timestamped", fetch(api, "plain", "timestamped", "0-F")) == expected(written, ALL)
    periodic = served("periodic", fetch(api, "plain", "periodic", "0-F"))
    assert periodic == expected(written, {n: ALL[n] for n in REGULAR}), "intervals detected from the data"


def test_events_come_from_the_events_table_of_the_mapping(api, root):
    """Rows of ``events_table`` (by ``unix_time`` ms like the samples): event mappings pick and number them;
    without mappings, event names that are numbers are the ids; rows outside the bounds are not served."""
    make_file(root / "000.sqlite", irregular=False)
    with sqlite3.connect(root / "000.sqlite") as db:
        db.execute("CREATE TABLE events(unix_time INTEGER, event TEXT, status TEXT, lap INTEGER, note TEXT)")
        rows = [(START_MS + 1_000, "pit", "in", 3, "x"), (START_MS + 2_000, "0x20", "flag", 4, None)]
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows + [(START_MS + 3_000, None, "", 5, "")])
    call_command("index_sqlite", "--events-table", "events", stdout=open(os.devnull, "w"))
    mapping = schema_mappings.get_schema_mapping(SOURCE, "000.sqlite")
    assert mapping["properties"]["events_table"] == "events"
    assert "lap" not in {f["source_field"] for f in mapping["field_mappings"]}, "event data is not a sample field"
    session = session_of("000.sqlite")
    events = served("events", fetch(api, session, "events"))
    assert [(t, e) for _, t, e in events] == [((START_MS + 2_000) * MS, (0x20, "flag", (4.0,)))], "ids by name"
    mapping["event_mappings"] = [PIT_EVENT]
    schema_mappings.put_schema_mapping(SOURCE, "000.sqlite", mapping)
    events = served("events", fetch(api, session, "events"))
    assert [(t, e) for _, t, e in events] == [((START_MS + 1_000) * MS, (0x10, "in", (3.0,)))]
    late = served("events", fetch(api, session, "events", start=(START_MS + 1_500) * MS))
    assert late == []
    assert served("events", fetch(api, session, "events", end=-(10**23))) == []
