"""Session service over REST: list, query, detail sort and metamodel on 100,000 sessions.

Seeds the bench database (``rta_bench``, never the one RTA_DATABASE_URL names)
with 100,000 sessions carrying 10 details of mixed types, starts the real
server (``manage.py serve --no-grpc``, daphne) on a free port and times, over
HTTP with a keep-alive connection, each operation ``--repeat`` times after
``--warmup`` untimed calls:

  list      GET  /rta/v2/sessions?pageSize=50
  query     POST /rta/v2/sessions  query={details.Driver $in 3, identifier $contains, details.Run $gte}
  sort      GET  /rta/v2/sessions?sort=details.Temperature:desc&pageSize=50
            (details.Temperature is indexed for sorting, as RTA_INDEXED_DETAILS /
            ``manage.py index_details`` do for the keys a team sorts by)
  sort_scan GET  /rta/v2/sessions?sort=details.Lap count:desc&pageSize=50
            (a key with no sort index: every row's value is evaluated; no target)
  metamodel GET  /rta/v2/session-metamodel
            (the data do not change between calls, so the server reuses its detail
            values after checking, in the same statement, that they are unchanged:
            sessions_app.services.metamodel_cache)
  metamodel_cold  the same on a second server with RTA_METAMODEL_CACHE_ENTRIES=0:
            every call computes the detail values afresh (a call after a details write)

Targets (p95): list, query and sort (a list request too) 50 ms, metamodel (either) 500 ms.
Also timed: GET /rta/v2/info (no database) and a bare PostgreSQL connect, the
overheads every request carries.

The baseline, measured in the same run, is what a user might write by hand
with the ORM and no query compiler: load every session in scope (excluding
sub-sessions) as model instances, then filter, sort and page in Python (or,
for the metamodel, collect the distinct detail values in Python). It runs in
this process without HTTP, which favours it. Its page must hold the same
sessions as the server's (and its detail values the same values), which checks
both sides. Ratios are baseline / server.

The seed (deterministic, ~30 s) is reused while the database holds it; the
session tables are VACUUM ANALYZEd before every run so earlier writes (other
benchmarks share the database) do not skew plans.

Usage: python -m bench sessions_rest [--reseed] [--sessions N] [--repeat N] [--warmup N]
                                     [--baseline-repeat N] [--baseline-warmup N] [--no-baseline]
                                     [--explain]
"""

import argparse
import http.client
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from bench import common

NAME = "sessions_rest"
SEED_VERSION = 2
PAGE_SIZE = 50
# p95 targets; sorting by a detail is a list request, so the list target applies to it.
TARGETS_MS = {
    "list": 50.0,
    "query": 50.0,
    "sort": 50.0,
    "sort_scan": None,
    "metamodel": 500.0,
    "metamodel_cold": 500.0,
}
METAMODEL_PATH = "/rta/v2/session-metamodel"

DRIVERS = [
    "Albon",
    "Alonso",
    "Bearman",
    "Bortoleto",
    "Colapinto",
    "Gasly",
    "Hadjar",
    "Hamilton",
    "Hulkenberg",
    "Lawson",
    "Leclerc",
    "Norris",
    "Ocon",
    "Piastri",
    "Russell",
    "Sainz",
    "Stroll",
    "Tsunoda",
    "Verstappen",
    "Antonelli",
]
TRACKS = [
    "Melbourne",
    "Shanghai",
    "Suzuka",
    "Sakhir",
    "Jeddah",
    "Miami",
    "Imola",
    "Monaco",
    "Barcelona",
    "Montreal",
    "Spielberg",
    "Silverstone",
    "Spa",
    "Budapest",
    "Zandvoort",
    "Monza",
    "Baku",
    "Singapore",
    "Austin",
    "Mexico City",
    "Interlagos",
    "Las Vegas",
    "Lusail",
    "Yas Marina",
]
KINDS = ["FP1", "FP2", "FP3", "Qualifying", "Race", "Test"]
ENGINEERS = [
    "Adams",
    "Baker",
    "Chen",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
]
CARS = [f"MCL-{n:02d}" for n in range(1, 11)]
SEASONS = [2024, 2025]
# Folders: sessions live in the root or (moved there, as set_folders does) in one leaf folder.
FOLDERS = [
    ("season-2024", "", "Season 2024"),
    ("season-2024/races", "season-2024", "Races"),
    ("season-2024/tests", "season-2024", "Tests"),
    ("season-2025", "", "Season 2025"),
    ("season-2025/races", "season-2025", "Races"),
    ("season-2025/tests", "season-2025", "Tests"),
]

QUERY = {
    "details.Driver": {"$in": ["Norris", "Piastri", "Leclerc"]},
    "identifier": {"$contains": "Monza"},
    "details.Run": {"$gte": 30},
}
SORT = "details.Temperature:desc"
SORT_INDEXED = ["details.Temperature"]
SORT_SCAN = "details.Lap count:desc"


# --- seeding ---------------------------------------------------------------------------------


def seed_label(count):
    return f"rta-bench sessions_rest seed v{SEED_VERSION} sessions={count}"


def _seed_record(comment, count):
    """``(finished at, seconds it took)`` from the database comment, if it records the seed of ``count``."""
    label, _, rest = (comment or "").partition(" at=")
    at, _, seconds = rest.partition(" seconds=")
    if label != seed_label(count) or not at:
        return None, None
    try:
        return datetime.fromisoformat(at), (float(seconds) if seconds else None)
    except ValueError:
        return None, None


def _seed_comment():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]


def _set_seed_comment(text):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"COMMENT ON DATABASE {connection.settings_dict['NAME']} IS %s", [text])


def _clear():
    from django.db import connection

    from sessions_app.models import ROOT_FOLDER, Folder, Session

    _set_seed_comment("")
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Session._meta.db_table} CASCADE")
    Folder.objects.exclude(identity=ROOT_FOLDER).delete()


def tidy():
    """VACUUM ANALYZE the session tables, as autovacuum would soon after a load.

    Run before every measurement so that statistics and the visibility map do not depend on
    what ran before (other benchmarks write to this database too).
    """
    from django.db import connection

    from sessions_app.models import ConfigBinding, Folder, FolderLink, Marker, Session, SessionRef

    with connection.cursor() as cursor:
        for model in (Session, FolderLink, SessionRef, Marker, ConfigBinding, Folder):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


def _session_rows(count, rng):
    """Yield ``(session fields, details, folder, i)`` for ``count`` deterministic sessions."""
    from rta_core.timeutil import format_ns

    setups = [f"SU-{n:04d}" for n in range(1, 2001)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = datetime(2024, 2, 20, tzinfo=UTC)
    span_s = int(timedelta(days=730).total_seconds())
    # Sessions arrive over time, so the table is (as in production) roughly in timestamp order.
    offsets = sorted(rng.randrange(span_s) for _ in range(count))
    for i, offset_s in enumerate(offsets):
        ns = int((start - epoch).total_seconds() + offset_s) * 1_000_000_000 + rng.randrange(1000) * 1_000_000
        season = SEASONS[0] if offset_s < span_s // 2 else SEASONS[1]
        track = rng.choice(TRACKS)
        kind = rng.choice(KINDS)
        driver = rng.choice(DRIVERS)
        run = rng.randint(1, 60)
        zone = rng.choice((0, 0, 60, 120, -300, 480))
        duration_ns = rng.randint(120, 5400) * 1_000_000_000
        details = {
            "Driver": driver,
            "Run": run,
            "Track": track,
            "Temperature": round(rng.uniform(12.0, 48.0), 1),
            "Wet": rng.random() < 0.15,
            "Car": rng.choice(CARS),
            "Event": f"{season} {track} {kind}",
            "Lap count": rng.randint(1, 78),
            "Engineer": rng.choice(ENGINEERS),
            "Setup": rng.choice(setups),
        }
        roll = rng.random()
        state = 4 if roll < 0.96 else (12 if roll < 0.98 else (28 if roll < 0.995 else 2))
        if rng.random() < 0.4:
            folder = ""
        else:
            folder = f"season-{season}/" + ("tests" if kind == "Test" else "races")
        fields = {
            "identity": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "state": state,
            "timestamp_text": format_ns(ns, zone),
            "timestamp_ns": ns,
            "timestamp": epoch + timedelta(microseconds=ns // 1000),
            "identifier": f"{season} {track} {kind} R{run:02d} {driver}",
            "start_time": ns,
            "end_time": ns + duration_ns,
            "type": kind,
            "quality": round(rng.random(), 3),
            "group": f"Season {season}",
            "version": f"1.{rng.randint(0, 9)}",
        }
        yield fields, details, folder, i


def seed(count, reseed=False, batch_size=2000):
    """Fill the bench database unless it already holds this seed; returns a dict describing it."""
    from django.db import transaction
    from django.utils import timezone as dj_timezone
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sessions_app.models import (
        ConfigBinding,
        Folder,
        FolderLink,
        Marker,
        RefKind,
        Session,
        SessionRef,
    )

    seeded_at, seed_seconds = (None, None) if reseed else _seed_record(_seed_comment(), count)
    if seeded_at is not None and Session.objects.filter(created__lte=seeded_at).count() == count:
        others = Session.objects.filter(created__gt=seeded_at).count()
        common.console.print(
            f"reusing the seeded bench database ({count:,} sessions, seeded {seeded_at:%Y-%m-%d %H:%M} UTC"
            + (f" in {seed_seconds:.1f} s" if seed_seconds else "")
            + "); "
            "--reseed to rebuild"
        )
        if others:
            common.console.print(
                f"[yellow]{others} sessions created since (by other benchmarks?) are listed too[/yellow]"
            )
        tidy()
        return {"sessions": count, "reused": True, "seconds": seed_seconds, "seeded_at": seeded_at.isoformat()}

    started = time.perf_counter()
    _clear()
    root = Folder.objects.get_or_create(identity="", defaults={"label": ""})[0]
    folders = {"": root}
    for identity, parent, name in FOLDERS:
        folders[identity] = Folder.objects.create(identity=identity, parent=folders[parent], label=name)

    rng = random.Random(20240301)
    now = dj_timezone.now()
    counts = {"sessions": 0, "folder_links": 0, "refs": 0, "markers": 0, "config_bindings": 0}
    progress = Progress(
        TextColumn("seeding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("sessions"),
        TimeElapsedColumn(),
        console=common.console,
        transient=False,
    )
    rows = _session_rows(count, rng)
    with progress:
        task = progress.add_task("seed", total=count)
        while True:
            batch = [next(rows, None) for _ in range(batch_size)]
            batch = [b for b in batch if b is not None]
            if not batch:
                break
            sessions, links, refs, markers, bindings = [], [], [], [], []
            for fields, details, folder, i in batch:
                session = Session(details=details, heartbeat=now, **fields)
                sessions.append(session)
                links.append(FolderLink(session=session, folder=folders[folder]))
                bindings.append(ConfigBinding(session=session, identifier=f"{details['Car']}:{details['Setup']}"))
                # Every 50th session publishes an anchor; the next one is its child (a sub-session,
                # hidden from lists), every 200th is an alternate of it, every 97th names a missing anchor.
                if i % 50 == 0:
                    refs.append(SessionRef(session=session, kind=RefKind.ANCHOR, uri=f"rta://bench/{i}"))
                elif i % 50 == 1:
                    refs.append(SessionRef(session=session, kind=RefKind.CHILD_OF, uri=f"rta://bench/{i - 1}"))
                if i % 200 == 2:
                    refs.append(SessionRef(session=session, kind=RefKind.ALTERNATE_OF, uri=f"rta://bench/{i - 2}"))
                if i % 97 == 5:
                    refs.append(SessionRef(session=session, kind=RefKind.CHILD_OF, uri=f"rta://bench/missing/{i}"))
                if i % 10 == 0:
                    for lap in range(3):
                        markers.append(
                            Marker(
                                session=session,
                                marker_id=f"lap-{lap + 1}",
                                category="Lap",
                                type="Lap",
                                label=f"Lap {lap + 1}",
                                start_time=fields["start_time"] + lap * 90_000_000_000,
                                end_time=fields["start_time"] + (lap + 1) * 90_000_000_000,
                            )
                        )
            with transaction.atomic():
                Session.objects.bulk_create(sessions)
                FolderLink.objects.bulk_create(links)
                ConfigBinding.objects.bulk_create(bindings)
                SessionRef.objects.bulk_create(refs)
                Marker.objects.bulk_create(markers)
            counts["sessions"] += len(sessions)
            counts["folder_links"] += len(links)
            counts["refs"] += len(refs)
            counts["markers"] += len(markers)
            counts["config_bindings"] += len(bindings)
            progress.update(task, advance=len(batch))
    analyze_started = time.perf_counter()
    tidy()
    seconds = time.perf_counter() - started
    seeded_at = dj_timezone.now()
    _set_seed_comment(f"{seed_label(count)} at={seeded_at.isoformat()} seconds={seconds:.1f}")
    common.console.print(
        f"seeded {counts['sessions']:,} sessions, {counts['folder_links']:,} folder links, {counts['refs']:,} refs, "
        f"{counts['markers']:,} markers, {counts['config_bindings']:,} config bindings in {seconds:.1f} s "
        f"(VACUUM ANALYZE {time.perf_counter() - analyze_started:.1f} s)"
    )
    return {
        "sessions": count,
        "reused": False,
        "seconds": round(seconds, 1),
        "seeded_at": seeded_at.isoformat(),
        **counts,
    }


# --- the service over HTTP --------------------------------------------------------------------


class Client:
    """A keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=120)

    def request(self, method, path, form=None):
        body, headers = None, common.auth_headers()
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.HTTPException, ConnectionError):
            # The server closed the idle connection: reconnect once.
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path} -> {response.status}: {data[:500]!r}")
        return data

    def close(self):
        self.conn.close()


def operations(client):
    """``{name: (description, call returning the response body)}``."""
    list_path = "/rta/v2/sessions?" + urlencode({"pageSize": PAGE_SIZE})
    sort_path = "/rta/v2/sessions?" + urlencode({"sort": SORT, "pageSize": PAGE_SIZE})
    scan_path = "/rta/v2/sessions?" + urlencode({"sort": SORT_SCAN, "pageSize": PAGE_SIZE})
    query_form = {"query": json.dumps(QUERY), "pageSize": PAGE_SIZE}
    return {
        "list": (f"GET {list_path}", lambda: client.request("GET", list_path)),
        "query": (
            "POST /rta/v2/sessions query=" + json.dumps(QUERY, separators=(",", ":")),
            lambda: client.request("POST", "/rta/v2/sessions", query_form),
        ),
        "sort": (f"GET {sort_path}", lambda: client.request("GET", sort_path)),
        "sort_scan": (f"GET {scan_path}", lambda: client.request("GET", scan_path)),
        "metamodel": (f"GET {METAMODEL_PATH}", lambda: client.request("GET", METAMODEL_PATH)),
    }


def _measure(results, name, description, call, args):
    samples = common.measure(call, repeat=args.repeat, warmup=args.warmup)
    served = json.loads(call())
    results[name] = {
        "request": description,
        "target_p95_ms": TARGETS_MS[name],
        "server": common.summary(samples),
        "samples_ms": [round(s, 3) for s in samples],
        "served": _served_size(name, served),
        "_served": served,
    }
    common.console.print(
        f"{name:<10} p50 {results[name]['server']['p50_ms']:8.2f} ms   p95 {results[name]['server']['p95_ms']:8.2f} ms"
    )


def measure_cold_metamodel(url, results, args):
    """The metamodel with reuse off (RTA_METAMODEL_CACHE_ENTRIES=0): what a call after a details write costs."""
    with common.http_server(url, extra_env={"RTA_METAMODEL_CACHE_ENTRIES": "0"}, log_name="server-cold.log") as (
        host,
        port,
    ):
        client = Client(host, port)
        try:
            description = f"GET {METAMODEL_PATH} (RTA_METAMODEL_CACHE_ENTRIES=0)"
            _measure(results, "metamodel_cold", description, lambda: client.request("GET", METAMODEL_PATH), args)
        finally:
            client.close()
    cold, warm = results["metamodel_cold"]["_served"], results["metamodel"]["_served"]
    results["metamodel_cold"]["same_as_reused"] = cold == warm
    if cold != warm:
        common.console.print("[red]the metamodel computed afresh differs from the reused one[/red]")


# --- the hand-written baseline ------------------------------------------------------------------


def _naive_scope():
    """Every session in the root scope, minus sub-sessions, loaded as model instances."""
    from sessions_app.models import RefKind, Session, SessionRef

    anchors = {}
    for session_id, uri in SessionRef.objects.filter(kind=RefKind.ANCHOR).values_list("session_id", "uri"):
        anchors.setdefault(uri, set()).add(session_id)
    subs = set()
    for ref in SessionRef.objects.filter(kind__in=[RefKind.CHILD_OF, RefKind.ALTERNATE_OF]):
        if anchors.get(ref.uri, set()) - {ref.session_id}:
            subs.add(ref.session_id)
    return [s for s in Session.objects.all() if s.identity not in subs]


def _naive_page(sessions):
    from django.db.models import prefetch_related_objects

    from sessions_app.services.rendering import sessions_json

    page = sessions[:PAGE_SIZE]
    prefetch_related_objects(page, "markers", "config_bindings")
    return sessions_json(page)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def naive_list():
    sessions = _naive_scope()
    sessions.sort(key=lambda s: s.identity)
    sessions.sort(key=lambda s: s.timestamp_ns, reverse=True)
    return _naive_page(sessions)


def naive_query():
    drivers = set(QUERY["details.Driver"]["$in"])
    needle = QUERY["identifier"]["$contains"]
    minimum = QUERY["details.Run"]["$gte"]
    sessions = [
        s
        for s in _naive_scope()
        if s.details.get("Driver") in drivers
        and needle in s.identifier
        and _is_number(s.details.get("Run"))
        and s.details["Run"] >= minimum
    ]
    sessions.sort(key=lambda s: s.identity)
    sessions.sort(key=lambda s: s.timestamp_ns, reverse=True)
    return _naive_page(sessions)


def naive_sort():
    sessions = _naive_scope()
    key = SORT.split(":")[0][len("details.") :]
    sessions.sort(key=lambda s: s.identity)
    numbers = [s for s in sessions if _is_number(s.details.get(key))]
    numbers.sort(key=lambda s: s.details[key], reverse=True)
    strings = [s for s in sessions if isinstance(s.details.get(key), str)]
    strings.sort(key=lambda s: s.details[key], reverse=True)
    booleans = [s for s in sessions if isinstance(s.details.get(key), bool)]
    booleans.sort(key=lambda s: s.details[key], reverse=True)
    absent = [s for s in sessions if key not in s.details]
    return _naive_page(numbers + strings + booleans + absent)


def naive_metamodel():
    """Distinct detail values per key and the core constraints, collected in Python."""
    from django.conf import settings

    from sessions_app.models import Session

    limit = settings.RTA_METAMODEL_MAX_VALUES
    values, core = {}, {"type": set(), "group": set(), "version": set()}
    bounds = {"timestamp": [], "start_time": [], "end_time": [], "quality": []}
    for s in Session.objects.all():
        for key, value in s.details.items():
            values.setdefault(key, {})[json.dumps(value)] = value
        for name in core:
            if getattr(s, name) is not None:
                core[name].add(getattr(s, name))
        for name, value in (
            ("timestamp", (s.timestamp_ns, s.timestamp_text)),
            ("start_time", s.start_time),
            ("end_time", s.end_time),
            ("quality", s.quality),
        ):
            if value is not None:
                b = bounds[name]
                if not b:
                    b.extend([value, value])
                else:
                    b[0], b[1] = min(b[0], value), max(b[1], value)

    def sort_key(v):
        return (0, v, "") if _is_number(v) else (1, 0, str(v))

    def detail_type(vals):
        if all(isinstance(v, bool) for v in vals):
            return "boolean"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            return "integer"
        if all(_is_number(v) for v in vals):
            return "number"
        return "string"

    details = {}
    for key in sorted(values):
        unique = sorted(values[key].values(), key=sort_key)
        details[key] = {"label": key, "type": detail_type(unique), "constraints": {"values": unique[:limit]}}
    return {
        "details": details,
        **{name: sorted(v)[:limit] for name, v in core.items()},
        "bounds": {k: v for k, v in bounds.items()},
    }


BASELINES = {"list": naive_list, "query": naive_query, "sort": naive_sort, "metamodel": naive_metamodel}


def _agree(name, served, baseline):
    """Whether the server's answer and the baseline's agree (pages: same identities in order)."""
    if name == "metamodel":
        got = {k: (v.get("type"), v.get("constraints", {}).get("values")) for k, v in served.get("details", {}).items()}
        want = {k: (v["type"], v["constraints"]["values"]) for k, v in baseline["details"].items()}
        return got == want
    return [s["identity"] for s in served["sessions"]] == [s["identity"] for s in baseline]


# --- EXPLAIN ---------------------------------------------------------------------------------------


def explain(top=2):
    """EXPLAIN ANALYZE the slowest SQL statements each operation issues (run in this process)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sessions_app.services import listing, metamodel

    calls = {
        "list": lambda: listing.list_sessions(page_size=PAGE_SIZE),
        "query": lambda: listing.list_sessions(query=QUERY, page_size=PAGE_SIZE),
        "sort": lambda: listing.list_sessions(sorts=[SORT], page_size=PAGE_SIZE),
        "metamodel": lambda: metamodel.metamodel(),
    }
    for name, call in calls.items():
        call()
        with CaptureQueriesContext(connection) as ctx:
            call()
        timed = []
        for q in ctx.captured_queries:
            sql = q["sql"]
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            ms = float(plan.rsplit("Execution Time:", 1)[1].split()[0])
            timed.append((ms, sql, plan))
        timed.sort(key=lambda t: -t[0])
        common.console.rule(
            f"EXPLAIN ANALYZE: {name} ({len(timed)} statements, {sum(t[0] for t in timed):.1f} ms executing in all)"
        )
        for ms, sql, plan in timed[:top]:
            common.console.print(f"{ms:.1f} ms: {_clip(sql, 600)}", markup=False, highlight=False)
            plan = "\n".join(_clip(line, 300) for line in plan.splitlines())
            common.console.print(plan, markup=False, highlight=False)


def _clip(text, n):
    return text if len(text) <= n else text[: n - 1] + "…"


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench sessions_rest", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=int(os.environ.get("RTA_BENCH_SESSIONS", 100_000)))
    parser.add_argument("--reseed", action="store_true", help="rebuild the seeded data even if it is there")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per operation (server)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (server)")
    parser.add_argument("--baseline-repeat", type=int, default=5, help="timed calls per operation (baseline)")
    parser.add_argument("--baseline-warmup", type=int, default=0, help="untimed calls first (baseline)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the SQL of each operation")
    args, _unknown = parser.parse_known_args(argv)  # options meant for other benchmarks are ignored
    return args


def main(argv=None):
    args = parse_args(argv)
    url = common.setup_bench_django()
    seeding = seed(args.sessions, reseed=args.reseed)
    from sessions_app.services import sort_indexes

    made = sort_indexes.create_indexes(SORT_INDEXED)
    if made:
        common.console.print(f"created sort indexes for {', '.join(SORT_INDEXED)}")
    if args.explain:
        explain()

    load_before = common.warn_if_busy("before measuring")
    data_before = fingerprint()
    results = {}
    with common.http_server(url) as (host, port):
        client = Client(host, port)
        try:
            overheads = measure_overheads(client, url, args)
            ops = operations(client)
            for name, (description, call) in ops.items():
                _measure(results, name, description, call, args)
        finally:
            client.close()
    measure_cold_metamodel(url, results, args)

    if not args.no_baseline:
        for name, fn in BASELINES.items():
            samples, answer = [], None
            for i in range(args.baseline_warmup + args.baseline_repeat):
                started = time.perf_counter()
                answer = fn()
                if i >= args.baseline_warmup:
                    samples.append((time.perf_counter() - started) * 1000.0)
            r = results[name]
            r["baseline"] = common.summary(samples)
            r["_answer"] = answer
            r["speedup_p50"] = round(r["baseline"]["p50_ms"] / r["server"]["p50_ms"], 1)
            r["speedup_p95"] = round(r["baseline"]["p95_ms"] / r["server"]["p95_ms"], 1)
            common.console.print(
                f"baseline {name:<10} p50 {r['baseline']['p50_ms']:8.1f} ms   p95 {r['baseline']['p95_ms']:8.1f} ms"
            )
    load_after = common.warn_if_busy("after measuring")
    # Another benchmark writing to this database meanwhile makes the two answers incomparable.
    data_changed = fingerprint() != data_before
    if data_changed:
        common.console.print("[yellow]the bench data changed during the run: pages not compared[/yellow]")
    for name, r in results.items():
        served, answer = r.pop("_served", None), r.pop("_answer", None)
        if "baseline" in r:
            r["agrees_with_baseline"] = None if data_changed else _agree(name, served, answer)
        r["meets_target"] = r["target_p95_ms"] is None or r["server"]["p95_ms"] <= r["target_p95_ms"]

    rows = []
    for name, r in results.items():
        s = r["server"]
        b = r.get("baseline")
        rows.append(
            [
                name,
                f"{s['p50_ms']:.1f}",
                f"{s['p95_ms']:.1f}",
                f"≤ {r['target_p95_ms']:.0f}" if r["target_p95_ms"] else "-",
                ("yes" if r["meets_target"] else "[red]NO[/red]") if r["target_p95_ms"] else "-",
                f"{b['p50_ms']:.0f}" if b else "-",
                f"{b['p95_ms']:.0f}" if b else "-",
                f"{r['speedup_p50']:.0f}×" if b else "-",
                f"{r['speedup_p95']:.0f}×" if b else "-",
                {True: "yes", False: "[red]NO[/red]", None: "n/a"}[r["agrees_with_baseline"]] if b else "-",
            ]
        )
    common.print_table(
        f"Session service over REST: {args.sessions:,} sessions × 10 details, page {PAGE_SIZE}, "
        f"{args.repeat} calls after {args.warmup} warm-up"
        + ("" if args.no_baseline else f" (baseline {args.baseline_repeat})"),
        [
            "operation",
            "p50 ms",
            "p95 ms",
            "target p95",
            "met",
            "baseline p50",
            "baseline p95",
            "ratio p50",
            "ratio p95",
            "same page",
        ],
        rows,
        caption="Baseline: hand-written ORM code, in-process, no HTTP: load every in-scope session and "
        "filter/sort/aggregate in Python. Ratio = baseline / server.",
    )
    data = {
        "benchmark": NAME,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": common.redact(url),
        "environment": {
            **common.environment(),
            "load_before": load_before,
            "load_after": load_after,
        },
        "data_changed_during_run": data_changed,
        "seed": {**seeding, "details_per_session": 10},
        "method": {
            "server": "manage.py serve --no-grpc (daphne) on 127.0.0.1, one keep-alive HTTP/1.1 connection, "
            "wall-clock time per request including reading the body",
            "baseline": "hand-written Django ORM in this process without HTTP: load all sessions in scope "
            "(minus sub-sessions) as model instances, filter/sort/page (or aggregate distinct detail values) "
            "in Python, render the page with the same renderer",
            "repeat": args.repeat,
            "warmup": args.warmup,
            "baseline_repeat": args.baseline_repeat,
            "baseline_warmup": args.baseline_warmup,
            "page_size": PAGE_SIZE,
            "query": QUERY,
            "sort": SORT,
        },
        "operations": results,
        "overheads": overheads,
    }
    path = common.write_results(NAME, data)
    common.console.print(f"results written to {path.relative_to(common.PROJECT_DIR)}")
    missed = [n for n, r in results.items() if not r["meets_target"]]
    disagree = [
        n for n, r in results.items() if r.get("agrees_with_baseline") is False or r.get("same_as_reused") is False
    ]
    if disagree:
        common.console.print(f"[red]server and baseline disagree on: {', '.join(disagree)}[/red]")
    if missed:
        common.console.print(f"[yellow]targets missed: {', '.join(missed)}[/yellow]")
    return 1 if disagree else 0


def measure_overheads(client, url, args):
    """What every request pays before any session work: HTTP + Django, and a database connection.

    The server opens a new PostgreSQL connection per request (under ASGI each request runs in
    its own thread, so CONN_MAX_AGE does not keep connections), so both are part of every figure.
    """
    import psycopg

    info = common.measure(lambda: client.request("GET", "/rta/v2/info"), repeat=args.repeat, warmup=args.warmup)
    conninfo = common.conninfo(url)

    def connect():
        psycopg.connect(**conninfo).close()

    connects = common.measure(connect, repeat=min(args.repeat, 20), warmup=2)
    out = {
        "GET /rta/v2/info (no database)": common.summary(info),
        "PostgreSQL connect + close": common.summary(connects),
    }
    for name, s in out.items():
        common.console.print(f"overhead   {name}: p50 {s['p50_ms']:.2f} ms   p95 {s['p95_ms']:.2f} ms")
    return out


def fingerprint():
    """A cheap summary of the bench data, to notice writes by anything else during the run."""
    from django.db import connection

    from sessions_app.models import Session, SessionRef

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), max(updated), (SELECT count(*) FROM {SessionRef._meta.db_table}) "
            f"FROM {Session._meta.db_table}"
        )
        return cursor.fetchone()


def _served_size(name, served):
    if name.startswith("metamodel"):
        return {"detail_keys": len(served.get("details", {}))}
    return {"sessions": len(served.get("sessions", []))}


if __name__ == "__main__":
    sys.exit(main())
