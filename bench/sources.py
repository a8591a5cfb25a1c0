"""Built-in data sources: the same hour of data read through the public endpoint from each store.

One run, one server (``manage.py serve`` against the bench database), the
native chunk store as the reference. The data is the toolkit example's
(``alpha beta gamma`` at 100 Hz, ``delta epsilon zeta`` at 50 Hz) plus four
fields at 10 kHz (``w x y z``): 10 channels, 145.6 M f64 samples an hour
(random walks). Each case puts it in its store and publishes a session over
it (``data_app.services.publish``, intervals declared); the measured read is
``GET /rta/v2/sessions/{session}/data/periodic/0-9``, best of ``--repeat``
after a warm-up, by a lean client (``bench.data.http_get``). Every response
is checked: the sample count decoded (untimed) is the hour's.

Cases (``CASES``; each a function preparing its store and returning the
server settings and the session's binding):

  native    the chunk store itself (written in-process with ``ChunkWriter``)
  sqlite    one file in the example's layout (``samples_100``/``samples_50``
            keyed by ``unix_time`` ms) + ``samples_10k`` (``time_us`` µs, a
            field-level ``time_column``/``time_unit``)
  postgres  three tables (100 Hz, 50 Hz, 10 kHz) of a ``run`` key and a
            ``timestamptz`` time, indexed on ``(run, ts)``, in the bench
            database; field-level ``table`` properties gather them in one
            session
  parquet   a folder of three files (one per rate, a ``time`` timestamp
            column; no dictionary pages, row groups of 1,000,000 rows): one
            identity, three groups
  influx    a real influxd on a free port: measurement ``hour``, tag
            ``run=1``, the whole hour (``--influx-seconds`` writes less:
            InfluxDB 1.x takes minutes to ingest it)

Targets (issue 17): PostgreSQL >= 10 M samples/s, SQLite >= 10 M, Parquet
>= 50 M, InfluxDB >= 3 M; each is reported with its ratio to the native store.

Usage: python -m bench sources [--seconds S] [--repeat N] [--cases native,sqlite,postgres,parquet,influx]
                               [--influx-seconds S]
"""

import argparse
import shutil
import signal
import sqlite3
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import common
from bench import data as data_bench

NAME = "sources"
PREFIX = "bench-sources-"
T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000
TABLES = {  # table -> (interval ns, fields); channels follow this order
    "samples_100": (10 * MS, ("alpha", "beta", "gamma")),
    "samples_50": (20 * MS, ("delta", "epsilon", "zeta")),
    "samples_10k": (100_000, ("w", "x", "y", "z")),
}
TARGETS = {"sqlite": 10e6, "postgres": 10e6}
TARGETS.update(parquet=50e6, influx=3e6)
PG_TABLES = {table: f"bench_sources_{table}" for table in TABLES}
PG_SOURCE, SQLITE_SOURCE = "benchpg", "benchsqlite"
PARQUET_SOURCE, INFLUX_SOURCE = "benchparquet", "benchinflux"
INFLUX_SECONDS = 3600  # of the hour written to InfluxDB (``--influx-seconds``; see prepare_influx)


@dataclass
class Hour:
    """The data: ``tables[table] = (times ns, {field: values})``."""

    seconds: int
    tables: dict = field(default_factory=dict)

    @property
    def samples(self):
        return sum(len(times) * len(values) for times, values in self.tables.values())

    @property
    def end(self):
        return max(int(times[-1]) for times, _ in self.tables.values())


@dataclass
class Prepared:
    env: dict  # server settings the case needs
    session: str  # the session to read
    samples: int | None = None  # samples the case's store holds, when not the whole hour (influx)


def make_hour(seconds):
    rng = np.random.default_rng(17)
    hour = Hour(seconds)
    for table, (interval, names) in TABLES.items():
        n = seconds * 1_000_000_000 // interval
        times = T0 + np.arange(n, dtype=np.int64) * interval
        hour.tables[table] = (times, {name: np.cumsum(rng.normal(0, 0.05, n)) for name in names})
    return hour


def fields(hour, properties_of):
    """``IndexedField``s of every field in channel order, with ``properties_of(table)``."""
    from data_app.sources.indexed import IndexedField

    return [
        IndexedField(name, "f64", interval, properties_of(table))
        for table, (interval, names) in TABLES.items()
        for name in names
    ]


def publish(source, identity, hour, properties_of, properties):
    from data_app.services.publish import publish
    from data_app.sources.indexed import IndexedData

    data = IndexedData(fields(hour, properties_of), T0, hour.end, identifier=PREFIX + source, properties=properties)
    return publish(source, identity, data, replace_mapping=True).session


# --- the cases ---------------------------------------------------------------------------------------


def prepare_native(hour, workdir):
    """The chunk store: periodic items of 10,000 samples per channel, written with ChunkWriter."""
    from django.conf import settings
    from rta.model import data_pb2

    from data_app.store.writer import ChunkWriter
    from sessions_app.services.updates import create_or_update_session

    settings.RTA_DATA_PATH = workdir / "data"  # the server is given the same path
    identity = PREFIX + "native"
    writer = ChunkWriter(identity)
    channel = 0
    for times, values in hour.tables.values():
        interval = int(times[1] - times[0])
        for column in values.values():
            for i in range(0, len(column), 10_000):
                block = column[i : i + 10_000]
                item = data_pb2.PeriodicData(
                    channel_id=channel,
                    start_timestamp=int(times[i]),
                    interval=interval,
                    samples=len(block),
                    buffer=block.astype("<f8").tobytes(),
                )
                writer.add("periodic", item)
            channel += 1
    writer.flush()
    create_or_update_session(identity, [("set_state", 4), ("set_time_range", (T0, hour.end))])
    return Prepared({"RTA_DATA_PATH": str(workdir / "data")}, identity)


def prepare_sqlite(hour, workdir):
    """One file: the example's two tables (``unix_time`` ms) and ``samples_10k`` (``time_us`` µs)."""
    root = workdir / "sqlite"
    root.mkdir()
    with sqlite3.connect(root / "bench.sqlite") as db:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("CREATE TABLE properties(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
        for table, (times, values) in hour.tables.items():
            time_column, unit = _sqlite_time(table)
            columns = ", ".join(f"{name} DOUBLE NOT NULL" for name in values)
            db.execute(f"CREATE TABLE {table}({time_column} INTEGER PRIMARY KEY ASC NOT NULL, {columns})")
            stamps = (times // unit).tolist()
            rows = zip(stamps, *[v.tolist() for v in values.values()], strict=True)
            db.executemany(f"INSERT INTO {table} VALUES (?{', ?' * len(values)})", rows)

    def properties_of(table):
        time_column, unit = _sqlite_time(table)
        return {"table": table, "time_column": time_column, "time_unit": {MS: "ms", 1000: "us"}[unit]}

    session = publish(SQLITE_SOURCE, "bench.sqlite", hour, properties_of, {})
    return Prepared({"RTA_SQLITE_ROOT": str(root), "RTA_SQLITE_SOURCE": SQLITE_SOURCE}, session)


def _sqlite_time(table):
    return ("time_us", 1000) if table == "samples_10k" else ("unix_time", MS)


def prepare_postgres(hour, workdir, url):
    """Three tables in the bench database, each ``(run text, ts timestamptz, fields...)`` indexed on (run, ts)."""
    import psycopg
    from psycopg import sql

    key = b"run-1"
    with psycopg.connect(url, autocommit=True) as db:
        for table, (times, values) in hour.tables.items():
            name = sql.Identifier(PG_TABLES[table])
            db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
            columns = sql.SQL(", ").join(sql.SQL("{} float8").format(sql.Identifier(n)) for n in values)
            db.execute(
                sql.SQL("CREATE TABLE {} (run text NOT NULL, ts timestamptz NOT NULL, {})").format(name, columns)
            )
            with db.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(name)) as copy:
                copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
                for i in range(0, len(times), 1_000_000):
                    copy.write(
                        _copy_rows(key, times[i : i + 1_000_000], [v[i : i + 1_000_000] for v in values.values()])
                    )
                copy.write(struct.pack(">h", -1))
            db.execute(sql.SQL("CREATE INDEX ON {} (run, ts)").format(name))
            db.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
    properties = {"key_column": "run", "time_column": "ts", "time_unit": "timestamp"}
    session = publish(PG_SOURCE, key.decode(), hour, lambda table: {"table": PG_TABLES[table]}, properties)
    return Prepared({"RTA_SQL_SOURCES": f"{PG_SOURCE}={url}"}, session)


def _copy_rows(key, times, columns):
    """Binary COPY rows (key, timestamptz, float8 ...) built by numpy: every field has a fixed width."""
    layout = [("n", ">i2"), ("kl", ">i4"), ("k", f"S{len(key)}"), ("tl", ">i4"), ("t", ">i8")]
    layout += [item for i in range(len(columns)) for item in ((f"l{i}", ">i4"), (f"v{i}", ">f8"))]
    rows = np.zeros(len(times), np.dtype(layout))
    rows["n"], rows["kl"], rows["k"], rows["tl"] = 2 + len(columns), len(key), key, 8
    rows["t"] = times // 1000 - 946_684_800_000_000  # µs since 2000-01-01
    for i, column in enumerate(columns):
        rows[f"l{i}"], rows[f"v{i}"] = 8, column
    return rows.tobytes()


def drop_postgres(url):
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as db:
        for name in PG_TABLES.values():
            db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def prepare_parquet(hour, workdir):
    """A folder ``hour/`` of three files (one per rate, a ``time`` timestamp column): one identity, three groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = workdir / "parquet" / "hour"
    folder.mkdir(parents=True)
    for table, (times, values) in hour.tables.items():
        columns = {"time": pa.array(times, pa.timestamp("ns")), **values}
        # Written as a telemetry store tuned for reading would be: no dictionary pages for continuous values
        # (they never repeat), row groups of 1,000,000 rows (whole 100 s windows at 10 kHz: no copy to join two).
        pq.write_table(pa.table(columns), folder / f"{table}.parquet", use_dictionary=False, row_group_size=1_000_000)
    properties = {"time_column": "time"}
    session = publish(PARQUET_SOURCE, "hour", hour, lambda table: {}, properties)
    return Prepared({"RTA_PARQUET_ROOT": str(workdir / "parquet"), "RTA_PARQUET_SOURCE": PARQUET_SOURCE}, session)


def prepare_influx(hour, workdir, seconds=INFLUX_SECONDS):
    """A real influxd (its own port and folder): measurement ``hour``, tag ``run=1``, every field, the first
    ``seconds`` of the hour (InfluxDB 1.x ingests ~200,000 lines/s here: the whole hour takes minutes)."""
    if not shutil.which("influxd"):
        raise SystemExit("the influx case needs influxd (Debian package influxdb)")
    from tests.influx_server import InfluxServer

    # Snapshots and full compactions soon after the writes stop, as data at rest would be (a query of data still
    # in the write cache and level-1 files merges them: slower than what a store holding history answers).
    cold = {"cache-snapshot-write-cold-duration": '"1s"', "compact-full-write-cold-duration": '"1s"'}
    server = _influx["server"] = InfluxServer(workdir / "influxd", data_settings=cold)
    server.query('CREATE DATABASE "bench"')
    part = Hour(min(hour.seconds, seconds))
    for table, (times, values) in hour.tables.items():
        n = int(np.searchsorted(times, T0 + part.seconds * 1_000_000_000))
        part.tables[table] = (times[:n], {name: v[:n] for name, v in values.items()})
        # Points of one series at one time merge their fields: each rate is written on its own.
        line = "hour,run=1 " + ",".join(f"{name}={{!r}}" for name in values) + " {}"
        for i in range(0, n, 200_000):
            columns = [v[i : min(n, i + 200_000)].tolist() for v in values.values()]
            server.write("bench", [line.format(*row) for row in zip(*columns, times[i : min(n, i + 200_000)].tolist())])
    _settled(workdir / "influxd")
    properties = {"dialect": "influxql", "database": "bench", "retention_policy": "autogen", "measurement": "hour"}
    session = publish(INFLUX_SOURCE, "\"run\"='1'", part, lambda table: {}, properties)
    return Prepared({"RTA_INFLUX_URL": server.url, "RTA_INFLUX_SOURCE": INFLUX_SOURCE}, session, part.samples)


def _settled(root, quiet=5.0, limit=600.0):
    """Wait until influxd has written its cache out and compacted: its TSM files unchanged for ``quiet`` s,
    none being written, the WAL empty (polled: a bench, not a test)."""
    import time

    def state():
        tsm = sorted((p.name, p.stat().st_size) for p in (root / "data").rglob("*.tsm*"))
        wal = sum(p.stat().st_size for p in (root / "wal").rglob("*.wal"))
        return tsm, wal

    deadline, last, since = time.monotonic() + limit, None, time.monotonic()
    while time.monotonic() < deadline:
        now = state()
        busy = now[1] > 0 or any(name.endswith(".tmp") for name, _ in now[0])
        if now != last or busy:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)


def stop_influx(url):
    server = _influx.pop("server", None)
    if server is not None:
        server.close()


_influx = {}


CASES = {  # name -> prepare(hour, workdir, bench database URL)
    "native": lambda hour, workdir, url: prepare_native(hour, workdir),
    "sqlite": lambda hour, workdir, url: prepare_sqlite(hour, workdir),
    "postgres": prepare_postgres,
    "parquet": lambda hour, workdir, url: prepare_parquet(hour, workdir),
    "influx": lambda hour, workdir, url: prepare_influx(hour, workdir, _influx.get("seconds", INFLUX_SECONDS)),
}
CLEANUPS = {"postgres": drop_postgres, "influx": stop_influx}  # name -> cleanup(bench database URL)


def postgres_backends():
    """The bench database's client backends (the server's pool among them): PostgreSQL does the reading."""
    import psycopg

    with psycopg.connect(common.bench_database_url(), autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


STORE_PROCESSES = {"postgres": postgres_backends}  # name -> () -> pids of the store's own processes


def _cpu_of(pids):
    """``{pid: CPU s}`` of the pids still running."""
    out = {}
    for pid in pids:
        try:
            out[pid] = common.cpu_seconds(pid)
        except FileNotFoundError:
            pass
    return out


# --- the run -----------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench sources", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3600, help="seconds of data (default: an hour)")
    parser.add_argument("--repeat", type=int, default=2, help="timed reads of each case (best is reported)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases (native first: the reference)")
    parser.add_argument(
        "--influx-seconds",
        type=int,
        default=INFLUX_SECONDS,
        help="seconds of the data written to InfluxDB (default: all; its ingest is the slow part of a run)",
    )
    args, _unknown = parser.parse_known_args(argv)
    return args


def _delete_bench_data():
    from data_app.models import Chunk
    from sessions_app.models import Session

    Session.objects.filter(identifier__startswith=PREFIX).delete()
    Session.objects.filter(identity__startswith=PREFIX).delete()
    Chunk.objects.filter(identity__startswith=PREFIX).delete()


def read(port, session, repeat, pid, store_processes=None):
    """Best-of-``repeat`` GET; ``store_processes()`` (after the warm-up): the store's own pids, their CPU counted."""
    path = f"/rta/v2/sessions/{session}/data/periodic/0-9"
    body, _ = data_bench.http_get(port, path)  # warm-up; also the response checked
    stores = store_processes() if store_processes else []
    runs = []
    for _ in range(repeat):
        before, store_before = common.cpu_seconds(pid), _cpu_of(stores)
        _, elapsed = data_bench.http_get(port, path)
        store_after = _cpu_of(stores)
        store_cpu = sum(store_after[p] - store_before[p] for p in store_before if p in store_after)
        runs.append((elapsed, common.cpu_seconds(pid) - before, store_cpu))
    best = min(runs)
    run = {"path": path, "seconds": [round(r[0], 3) for r in runs], "best_seconds": best[0], "cpu": best[1]}
    if stores:
        run["store_cpu"] = best[2]
    return body, run


def main(argv=None):
    args = parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if args.cases == ",".join(CASES) and not shutil.which("influxd"):
        common.console.print("influx: left out (no influxd; Debian package influxdb)")
        cases.remove("influx")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown cases: {', '.join(unknown)} (known: {', '.join(CASES)})")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _influx["seconds"] = args.influx_seconds
    url = common.setup_bench_django()
    load_before = common.warn_if_busy("before the run")
    from django.db import connections

    workdir = Path(tempfile.mkdtemp(prefix="rta-bench-sources-"))
    with common.console.status(f"generating {args.seconds} s of data"):
        hour = make_hour(args.seconds)
    common.console.print(f"{hour.samples:,} samples in {len(TABLES)} tables, 10 channels")
    _delete_bench_data()
    results, env, sessions, expected = {}, {}, {}, {}
    try:
        for case in cases:
            with common.stopwatch() as took, common.console.status(f"{case}: writing the data"):
                prepared = CASES[case](hour, workdir, url)
            env.update(prepared.env)
            sessions[case] = prepared.session
            expected[case] = prepared.samples or hour.samples
            common.console.print(f"{case}: data in place in {took():.1f} s")
        connections.close_all()
        with common.http_server(url, grpc=True, extra_env=env, log_name="sources-server.log") as (port, _, pid):
            for case in cases:
                with common.console.status(f"{case}: reading"):
                    body, run = read(port, sessions[case], args.repeat, pid, STORE_PROCESSES.get(case))
                samples = data_bench.decoded_samples(body, "periodic")
                if samples != expected[case]:
                    raise RuntimeError(f"{case}: served {samples:,} samples, the data has {expected[case]:,}")
                run.update(samples=samples, samples_per_second=samples / run["best_seconds"], bytes=len(body))
                results[case] = run
                common.console.print(f"{case}: {_m(run['samples_per_second'])} samples/s")
                if run.get("store_cpu"):
                    per_cpu = samples / (run["cpu"] + run["store_cpu"])
                    common.console.print(f"{case}: {_m(per_cpu)} samples per CPU s of the server and the store")
    finally:
        for case in cases:
            if case in CLEANUPS:
                CLEANUPS[case](url)
        _delete_bench_data()
        connections.close_all()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, args, url, load_before, hour)
    return 0


def _m(x):
    return "—" if x is None else f"{x / 1e6:,.1f} M"


def report(results, args, url, load_before, hour):
    native = results.get("native", {}).get("samples_per_second")
    rows, figures = [], {}
    for case, run in results.items():
        value, target = run["samples_per_second"], TARGETS.get(case)
        met = None if target is None else value >= target
        ratio = value / native if native else None
        figures[case] = {"value": value, "ratio_to_native": ratio, "target": target, "meets_target": met}
        rows.append(
            [
                case,
                _m(value),
                _m(run["samples"] / run["cpu"]) if run["cpu"] else "—",
                "—" if ratio is None else f"{ratio:.3f}",
                "—" if target is None else f"≥ {_m(target)}",
                "—" if met is None else ("yes" if met else "[red]NO[/red]"),
            ]
        )
    load_after = common.machine_load()
    common.print_table(
        f"Built-in sources: {hour.samples:,} samples ({args.seconds} s, 10 channels), periodic, best of {args.repeat}",
        ["store", "samples/s", "per server CPU s", "× native", "target", "met"],
        rows,
        caption=f"Load average {load_before['load_1min']} before, {load_after['load_1min']} after, on "
        f"{load_after['cpus']} CPUs; the server, the stores and the client share them.",
    )
    method = {
        "data": "3 x 100 Hz + 3 x 50 Hz + 4 x 10 kHz f64 random walks",
        "reads": "GET periodic 0-9 over the whole range through the session endpoint, best of --repeat",
    }
    common.save_results(NAME, url, method, load_before, load_after, figures=figures, runs=results)


if __name__ == "__main__":
    sys.exit(main())
