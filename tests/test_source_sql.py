"""The PostgreSQL table data source (``data_app.sources.sql``) and ``manage.py index_sql``, on real tables.

The tables live in a database of their own beside the test database
(``<test database name>_store``, created when missing); each test makes its
own tables and drops them. Rows are indexed with the command and read back
through the session REST endpoint, every sample checked against what was
written; keys with quotes and ``%`` are served exactly, injection attempts
are no data and leave the table intact, and /health reports an unreachable
database without its URL.
"""

import os
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import psycopg
import pytest
from django.core.management import CommandError, call_command

from config_app.services import schema_mappings
from data_app.services import publish
from sessions_app.models import DataBinding, Session
from sessions_app.services.updates import create_or_update_session
from tests.conftest import IN_CI
from tests.test_data_bindings import T0, fetch, served
from tests.test_sources_series import PIT_EVENT

pytestmark = pytest.mark.django_db
MS = 1_000_000
SOURCE = "pg"
SECONDS = 200
KEYS = ("car 44", "o'brien", "50%", "x_y")


def store_url():
    """The store database's URL: the test database's server, ``<name>_store``; created when missing."""
    url = os.environ.get("RTA_DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        if IN_CI:
            pytest.fail("the SQL source tests need PostgreSQL (set RTA_DATABASE_URL)")
        pytest.skip("needs PostgreSQL")
    parts = urlsplit(url)
    name = (parts.path.strip("/") or "rta") + "_store"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            try:
                db.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # another worker made it first
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def store(settings):
    """``(url, connection, table name)``: a fresh table name, dropped afterwards; the source configured."""
    url = store_url()
    table = f"laps_{uuid.uuid4().hex[:10]}"
    settings.RTA_SQL_SOURCES = {SOURCE: url}
    with psycopg.connect(url, autocommit=True) as db:
        yield url, db, table
        db.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table)))


def fill(db, table, seconds=SECONDS):
    """A TimescaleDB-style table: timestamptz time, a text key, 100 Hz speed / rpm, 20 Hz gear with NULL holes,
    an irregular sensor (NULL on other rows). Returns ``{key: {field: (times ns, values)}}``."""
    db.execute(
        psycopg.sql.SQL(
            "CREATE TABLE {} (car text NOT NULL, ts timestamptz NOT NULL, speed float8, rpm integer,"
            " gear smallint, sensor real, label text)"
        ).format(psycopg.sql.Identifier(table))
    )
    written = {}
    rng = np.random.default_rng(5)
    for k, key in enumerate(KEYS):
        start = T0 + k * 1000 * MS + 7 * MS
        times = start + np.arange(seconds * 100, dtype=np.int64) * 10 * MS
        speed = rng.normal(size=len(times)) * 50
        rpm = rng.integers(0, 15000, size=len(times)).astype(np.float64)
        gear = np.where(np.arange(len(times)) % 5 == 0, rng.integers(1, 8, size=len(times)), np.nan)
        gear[3000:3500] = np.nan  # a hole: still regular
        sensor = np.full(len(times), np.nan)
        picks = np.unique(np.cumsum(rng.integers(1, 30, size=len(times) // 10)))
        picks = picks[picks < len(times)]
        sensor[picks] = rng.normal(size=len(picks)).astype(np.float32)
        with db.cursor().copy(
            psycopg.sql.SQL("COPY {} (car, ts, speed, rpm, gear, sensor, label) FROM STDIN").format(
                psycopg.sql.Identifier(table)
            )
        ) as copy:
            for i, t in enumerate(times.tolist()):
                stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t // 1000)
                g, v = (
                    (None if np.isnan(gear[i]) else int(gear[i])),
                    (None if np.isnan(sensor[i]) else float(sensor[i])),
                )
                copy.write_row((key, stamp, float(speed[i]), int(rpm[i]), g, v, "l"))
        written[key] = {
            n: (times[~np.isnan(v)], v[~np.isnan(v)])
            for n, v in (("speed", speed), ("rpm", rpm), ("gear", gear), ("sensor", sensor))
        }
    db.execute(psycopg.sql.SQL("CREATE INDEX ON {} (car, ts)").format(psycopg.sql.Identifier(table)))
    db.execute(psycopg.sql.SQL("ANALYZE {}").format(psycopg.sql.Identifier(table)))
    return written


def index(table, *extra):
    args = ["--source", SOURCE, "--table", table, "--key-column", "car", "--time-column", "ts", *extra]
    call_command("index_sql", *args, stdout=open(os.devnull, "w"))


def expected(written, fields, data_type="<f8", start=None, end=None):
    out = []
    for name, channel in fields.items():
        times, values = written[name]
        keep = (times >= (start or times.min())) & (times <= (end or times.max()))
        raw = np.asarray(values[keep], dtype=data_type)
        out += [(channel, int(t), raw[i : i + 1].tobytes()) for i, t in enumerate(times[keep])]
    return sorted(out)


CHANNELS = {"speed": 0, "rpm": 1, "gear": 2, "sensor": 3}


def test_each_key_is_a_session_served_sample_by_sample(api, store):
    _, db, table = store
    written = fill(db, table)
    index(table)
    for key in KEYS:
        session = Session.objects.get(identity=publish.session_identity(SOURCE, key))
        assert session.identifier == key
        times = written[key]["speed"][0]
        assert (session.start_time, session.end_time) == (int(times[0]), int(times[-1]))
        binding = DataBinding.objects.get(session=session)
        assert (binding.source, binding.identity) == (SOURCE, key), "the key is matched exactly"
        timestamped = served("timestamped", fetch(api, session.identity, "timestamped", "0-3"))
        assert timestamped == expected(written[key], CHANNELS)
        periodic = served("periodic", fetch(api, session.identity, "periodic", "0-3"))
        regular = {n: c for n, c in CHANNELS.items() if n != "sensor"}
        assert periodic == expected(written[key], regular), "the irregular sensor serves no periodic data"
    mapping = schema_mappings.get_schema_mapping(SOURCE, "o'brien")
    assert mapping["properties"] == {"table": table, "key_column": "car", "time_column": "ts"}
    intervals = {f["source_field"]: f["properties"].get("interval") for f in mapping["field_mappings"]}
    assert intervals == {"speed": str(10 * MS), "rpm": str(10 * MS), "gear": str(50 * MS), "sensor": None}


def test_indexing_again_updates_and_never_duplicates(store):
    _, db, table = store
    fill(db, table, seconds=5)
    index(table)
    index(table)
    assert Session.objects.count() == len(KEYS)
    assert DataBinding.objects.count() == len(KEYS)


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_bounds_inside_chunks_leave_chunk_boundaries_unchanged(api, store, kind):
    _, db, table = store
    written = fill(db, table)["car 44"]
    index(table)
    session = publish.session_identity(SOURCE, "car 44")
    whole = {(c.start, c.end, tuple(c.channel_ids)) for c in fetch(api, session, kind, "0-3")}
    start, end = T0 + 41_234 * MS + 5, T0 + 151_111 * MS + 9
    part = fetch(api, session, kind, "0-3", start=start, end=end)
    assert len(part) > 4
    for chunk in part:
        assert (chunk.start, chunk.end, tuple(chunk.channel_ids)) in whole
    fields = {n: c for n, c in CHANNELS.items() if kind == "timestamped" or n != "sensor"}
    inside = [s for s in served(kind, part) if start <= s[1] <= end]
    assert inside == expected(written, fields, start=start, end=end)


def test_integer_times_and_mapped_types(api, store):
    _, db, table = store
    db.execute(
        psycopg.sql.SQL("CREATE TABLE {} (run bigint, t_ms bigint, level float8, pit boolean)").format(
            psycopg.sql.Identifier(table)
        )
    )
    times_ms = T0 // MS + np.arange(5000, dtype=np.int64) * 4
    levels = np.arange(5000) % 300 - 150.0
    with db.cursor().copy(psycopg.sql.SQL("COPY {} FROM STDIN").format(psycopg.sql.Identifier(table))) as copy:
        for t, v in zip(times_ms.tolist(), levels.tolist(), strict=True):
            copy.write_row((42, t, v, v > 0))
    db.execute(psycopg.sql.SQL("CREATE INDEX ON {} (run, t_ms)").format(psycopg.sql.Identifier(table)))
    call_command(
        "index_sql", "--source", SOURCE, "--table", table, "--key-column", "run", "--time-column", "t_ms",
        "--time-unit", "ms", stdout=open(os.devnull, "w"),
    )  # fmt: skip
    mapping = schema_mappings.get_schema_mapping(SOURCE, "42")
    mapping["field_mappings"][0]["target_channel_data_type"] = "INT16"
    schema_mappings.put_schema_mapping(SOURCE, "42", mapping)
    session = publish.session_identity(SOURCE, "42")
    samples = served("periodic", fetch(api, session, "periodic", "0"))
    assert samples == expected({"level": (times_ms * MS, levels)}, {"level": 0}, "<i2")
    pits = served("timestamped", fetch(api, session, "timestamped", "1"))
    assert pits == expected({"pit": (times_ms * MS, (levels > 0).astype(float))}, {"pit": 1}), "booleans are 0/1"
    create_or_update_session("not-a-number", [("set_data_bindings", [{"source": SOURCE, "identity": "4x2"}])])
    assert fetch(api, "not-a-number", "timestamped", "0-") == [], "a key of the wrong type is no data"


def test_injection_attempts_in_identities_are_no_data(api, store):
    _, db, table = store
    fill(db, table, seconds=5)
    index(table)
    rows = db.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))).fetchone()
    mapping = schema_mappings.get_schema_mapping(SOURCE, "car 44")
    attempts = ["car 44' OR '1'='1", "'; DROP TABLE " + table + "; --", "%", "car%", "car 44\\", 'car 44"', "o''brien"]
    for i, identity in enumerate(attempts):
        schema_mappings.put_schema_mapping(SOURCE, identity, mapping)
        create_or_update_session(f"attempt-{i}", [("set_data_bindings", [{"source": SOURCE, "identity": identity}])])
        assert fetch(api, f"attempt-{i}", "timestamped", "0-") == [], identity
    after = db.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))).fetchone()
    assert after == rows, "the table is intact"
    # Names come from the mapping and are identifiers: an injected table name names no table.
    bad = {**mapping, "properties": {**mapping["properties"], "table": f'{table}" WHERE true; DROP TABLE {table}; --'}}
    schema_mappings.put_schema_mapping(SOURCE, "car 44", bad)
    assert fetch(api, publish.session_identity(SOURCE, "car 44"), "timestamped", "0-") == []
    assert (
        db.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))).fetchone() == rows
    )


def test_the_source_is_exposed_as_a_data_service(api, store, settings):
    _, db, table = store
    written = fill(db, table, seconds=20)
    index(table)
    settings.RTA_EXPOSE_DATA_SERVICE = True
    response = api.get(f"/rta/v2/sources/{SOURCE}/rta/v2/data/{quote('50%', safe='')}/timestamped/0")
    assert response.status_code == 200
    from rta_kit import wire

    chunks = wire.read_chunks(b"".join(response.streaming_content))
    assert served("timestamped", chunks) == expected(written["50%"], {"speed": 0})


def test_health_reports_an_unreachable_database_without_its_url(api, store, settings):
    url, _, _ = store
    assert api.get("/health").status_code == 200
    settings.RTA_SQL_SOURCES = {SOURCE: url, "gone": "postgres://secret-user:pw@127.0.0.1:1/hidden_db"}
    response = api.get("/health")
    body = response.content.decode()
    assert response.status_code == 503 and "data source gone" in body
    assert "secret-user" not in body and "hidden_db" not in body and "127.0.0.1:1" not in body
    settings.RTA_SQL_SOURCES = {SOURCE: url}
    assert api.get("/health").status_code == 200


def test_field_properties_gather_tables_at_different_rates(api, store):
    _, db, table = store
    written = fill(db, table, seconds=20)["car 44"]
    fast = psycopg.sql.Identifier(table + "_fast")
    db.execute(psycopg.sql.SQL("CREATE TABLE {} (car text, t_us bigint, brake float8)").format(fast))
    try:
        times_us = T0 // 1000 + np.arange(20_000, dtype=np.int64) * 1000 + 3
        brake = np.sin(np.arange(20_000) / 100.0)
        with db.cursor().copy(psycopg.sql.SQL("COPY {} FROM STDIN").format(fast)) as copy:
            for t, v in zip(times_us.tolist(), brake.tolist(), strict=True):
                copy.write_row(("car 44", t, v))
        db.execute(psycopg.sql.SQL("CREATE INDEX ON {} (car, t_us)").format(fast))
        fast_table = {"table": table + "_fast", "time_column": "t_us", "time_unit": "us"}
        schema_mappings.put_schema_mapping(
            SOURCE,
            "car 44",
            {
                "properties": {"table": table, "key_column": "car", "time_column": "ts"},
                "field_mappings": [
                    {"source_field": "speed", "target_channel": 0},
                    {"source_field": "brake", "target_channel": 1, "properties": fast_table},
                ],
            },
        )
        create_or_update_session("gathered", [("set_data_bindings", [{"source": SOURCE, "identity": "car 44"}])])
        samples = served("periodic", fetch(api, "gathered", "periodic", "0-1"))
        assert samples == sorted(
            expected(written, {"speed": 0}) + expected({"brake": (times_us * 1000, brake)}, {"brake": 1})
        )
    finally:
        db.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(fast))


@pytest.mark.parametrize(
    "value",
    ["pg=mysql://root:hunter2@db/x", "pg", "pg=postgres://u:hunter2@h/a,pg=postgres://u:hunter2@h/b"],
)
def test_a_malformed_source_list_stops_the_start_without_urls(value, tmp_path):
    from tests.test_settings_strict import check

    result = check({"RTA_SQL_SOURCES": value}, tmp_path)
    assert result.returncode == 2 and "RTA_SQL_SOURCES" in result.stderr, result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_events_come_from_the_events_table_of_the_mapping(api, store):
    """The key's rows of ``events_table``: named by ``event``, ``status`` text, numeric data; event mappings
    pick and number them; other keys' rows and rows outside the bounds are not served."""
    _, db, table = store
    fill(db, table, seconds=5)
    events_table = f"{table}_events"
    db.execute(
        psycopg.sql.SQL(
            "CREATE TABLE {} (car text, ts timestamptz, event text, status text, lap int, note text)"
        ).format(psycopg.sql.Identifier(events_table))
    )
    stamp = lambda ns: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)  # noqa: E731
    rows = [
        ("o'brien", stamp(T0 + 1_000 * MS), "pit", "in", 3, "x"),
        ("o'brien", stamp(T0 + 2_000 * MS), "flag", "yellow", 4, "y"),
        ("o'brien", stamp(T0 + 3_000 * MS), "pit", None, 5, "z"),
        ("car 44", stamp(T0 + 1_500 * MS), "pit", "in", 1, "other key"),
    ]
    with db.cursor() as cursor:
        cursor.executemany(
            psycopg.sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s)").format(
                psycopg.sql.Identifier(events_table)
            ),
            rows,
        )
    try:
        with pytest.raises(CommandError, match="events table"):
            index(table, "--events-table", f"{table}_nothing")
        index(table, "--events-table", events_table)
        mapping = schema_mappings.get_schema_mapping(SOURCE, "o'brien")
        assert mapping["properties"]["events_table"] == events_table
        mapping["event_mappings"] = [PIT_EVENT]
        schema_mappings.put_schema_mapping(SOURCE, "o'brien", mapping)
        session = publish.session_identity(SOURCE, "o'brien")
        events = served("events", fetch(api, session, "events"))
        assert [(t, e) for _, t, e in events] == [
            (T0 + 1_000 * MS, (0x10, "in", (3.0,))),
            (T0 + 3_000 * MS, (0x10, "", (5.0,))),
        ]
        inside = served("events", fetch(api, session, "events", start=T0 + 2_500 * MS, end=T0 + 10**12))
        assert [t for _, t, _ in inside] == [T0 + 3_000 * MS]
        for bounds in ({"start": 10**23}, {"end": -(10**23)}):
            assert served("events", fetch(api, session, "events", **bounds)) == []  # beyond any time: never a 5xx
    finally:
        db.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(events_table)))
