"""Shared benchmark helpers: the bench database, a real HTTP server, timing, tables and results.

Benchmarks never touch the database RTA_DATABASE_URL names: they run against a
separate PostgreSQL database, ``rta_bench``, on the same server (created and
migrated on first use).
"""

import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
# RTA_BENCH_DATABASE picks another name, so benchmarks can run side by side.
BENCH_DATABASE = os.environ.get("RTA_BENCH_DATABASE") or "rta_bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/rta"

# Wide enough for the results table when output is piped (rich assumes 80 columns then).
console = Console() if sys.stdout.isatty() else Console(width=160)


# --- the bench database ----------------------------------------------------------------------


def bench_database_url(source_url=None):
    """RTA_DATABASE_URL (or ``source_url``) with its database name replaced by ``BENCH_DATABASE``."""
    source_url = source_url or os.environ.get("RTA_DATABASE_URL") or DEFAULT_DATABASE_URL
    parts = urlsplit(source_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"benchmarks need PostgreSQL: RTA_DATABASE_URL is {source_url!r}")
    return urlunsplit(parts._replace(path="/" + BENCH_DATABASE))


def conninfo(url, dbname=None):
    """psycopg keyword arguments for ``url`` (its database, or ``dbname`` on the same server)."""
    parts = urlsplit(url)
    out = {
        "dbname": dbname or parts.path.lstrip("/"),
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
    }
    if parts.username:
        out["user"] = parts.username
    if parts.password:
        out["password"] = parts.password
    return out


def ensure_database(url):
    """Create the bench database on the server ``url`` names unless it exists."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    if name != BENCH_DATABASE:
        raise SystemExit(f"refusing to set up {name!r}: benchmarks only use {BENCH_DATABASE!r}")
    with psycopg.connect(**conninfo(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            console.print(f"created database [bold]{name}[/bold]")


_SETUP_URL = None


def setup_bench_django(verbose=True):
    """Point Django at the bench database, set it up and migrate it; returns the bench URL.

    Must run before anything imports ``rta_site.settings`` (settings read RTA_DATABASE_URL
    once). Idempotent, so every benchmark module can call it.
    """
    global _SETUP_URL
    if _SETUP_URL is not None:
        return _SETUP_URL
    url = bench_database_url()
    if "django.conf" in sys.modules:
        from django.conf import settings

        if settings.configured and settings.DATABASES["default"].get("NAME") != BENCH_DATABASE:
            raise RuntimeError("Django was configured before the bench database was selected")
    ensure_database(url)
    os.environ["RTA_DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rta_site.settings")
    os.environ.setdefault("RTA_LOG_LEVEL", "WARNING")
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    import django
    from django.core.management import call_command

    django.setup()
    started = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    if verbose:
        console.print(f"bench database {redact(url)} migrated in {time.perf_counter() - started:.1f} s")
    _SETUP_URL = url
    return url


def redact(url):
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# --- credentials, for servers with RTA_AUTH_ENABLED (RTA_AUTH_TOKEN or client credentials) ------


def auth_headers():
    """The bearer token header the environment names (``rta_site.auth.client``), or ``{}``."""
    from rta_site.auth.client import http_headers

    return http_headers()


def grpc_channel(target, **kwargs):
    """A plaintext gRPC channel to ``target`` that sends the environment's bearer token, if any."""
    import grpc

    from rta_site.auth.client import authorized_channel

    return authorized_channel(grpc.insecure_channel(target, **kwargs))


def aio_grpc_channel(target, **kwargs):
    """``grpc.aio.insecure_channel`` sending the environment's bearer token, if any."""
    from grpc import aio

    from rta_site.auth.client import aio_interceptors

    return aio.insecure_channel(target, interceptors=aio_interceptors(), **kwargs)


# --- a real HTTP server ------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(database_url, ready_path="/rta/v2/info", timeout=60, extra_env=None, grpc=False, log_name="server.log"):
    """``manage.py serve`` (daphne; gRPC too with ``grpc=True``) on free local ports against ``database_url``.

    Yields ``(host, port)``, or ``(http_port, grpc_port, pid)`` with ``grpc=True``; the
    server process (and only it) is stopped on exit.
    """
    port = free_port()
    grpc_port = free_port() if grpc else None
    env = {**os.environ, "RTA_DATABASE_URL": database_url, "RTA_LOG_LEVEL": "WARNING", "RTA_DEBUG": "false"}
    env.update(extra_env or {})
    log_path = RESULTS_DIR / log_name
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "manage.py", "serve", "--bind", "127.0.0.1", "--http-port", str(port)]
    args += ["--grpc-port", str(grpc_port)] if grpc else ["--no-grpc"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not answer within {timeout} s; see {log_path}")
                time.sleep(0.2)
            yield (port, grpc_port, proc.pid) if grpc else ("127.0.0.1", port)
        finally:
            stop_process(proc, timeout=15)


def stop_process(proc, timeout=15):
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def grpc_server(database_url, processes=1, timeout=60, extra_env=None):
    """``manage.py rungrpc --processes N`` on a free local port against ``database_url``.

    Yields the port once the health service answers; the server processes are
    stopped on exit.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    env = {**os.environ, "RTA_DATABASE_URL": database_url, "RTA_LOG_LEVEL": "WARNING", "RTA_DEBUG": "false"}
    env.update(extra_env or {})
    log_path = RESULTS_DIR / "grpc-server.log"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rungrpc",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--processes",
                str(processes),
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"gRPC server exited with {proc.returncode}; see {log_path}")
                    try:
                        stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                        break
                    except grpc.RpcError:
                        if time.monotonic() > deadline:
                            raise RuntimeError(
                                f"gRPC server did not answer within {timeout} s; see {log_path}"
                            ) from None
                        time.sleep(0.2)
            # The extra processes bind after the parent; give them a moment to listen.
            time.sleep(1.0 if processes > 1 else 0)
            yield port
        finally:
            stop_process(proc, timeout=20)


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` (all its threads) so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_version():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def environment():
    """What the figures were measured on, for the results file."""
    return {
        "python": platform.python_version(),
        "postgresql": postgres_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg()[0],
    }


# --- timing ------------------------------------------------------------------------------------


def percentile(values, p):
    """The ``p``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def measure(fn, repeat=50, warmup=5):
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times; wall-clock milliseconds each."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000.0)
    return out


def summary(samples_ms):
    return {
        "n": len(samples_ms),
        "min_ms": round(min(samples_ms), 3),
        "p50_ms": round(percentile(samples_ms, 50), 3),
        "p95_ms": round(percentile(samples_ms, 95), 3),
        "max_ms": round(max(samples_ms), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
    }


@contextlib.contextmanager
def stopwatch():
    """``with stopwatch() as elapsed: ...``; ``elapsed()`` gives seconds so far (frozen on exit)."""
    started = time.perf_counter()
    stopped = []

    def elapsed():
        return stopped[0] if stopped else time.perf_counter() - started

    try:
        yield elapsed
    finally:
        stopped.append(time.perf_counter() - started)


def machine_load():
    """``{"load_1min": .., "cpus": ..}``: other work on the machine skews every figure."""
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"load_1min": load, "cpus": os.cpu_count()}


def warn_if_busy(when):
    """Print a warning when the machine is already busy; returns machine_load()."""
    load = machine_load()
    if load["load_1min"] is not None and load["cpus"] and load["load_1min"] > 0.5 * load["cpus"]:
        console.print(
            f"[yellow]{when}: load average {load['load_1min']} on {load['cpus']} CPUs: "
            "other work is running, figures will be noisy[/yellow]"
        )
    return load


# --- output --------------------------------------------------------------------------------------


def print_table(title, columns, rows, caption=None):
    """A rich table; ``columns`` are header strings (right-aligned after the first)."""
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    console.print(table)


def save_results(name, url, method, load_before, load_after, **sections):
    """Write ``bench/results/{name}.json`` with the common head (when, database, machine and load), say where."""
    data = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": redact(url),
        "environment": {**environment(), "load_before": load_before, "load_after": load_after},
        "method": method,
        **sections,
    }
    path = write_results(name, data)
    console.print(f"results written to {path}")
    return path


def write_results(name, data):
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
