"""SessionStore over gRPC: CreateOrUpdateSession calls per second, 1 and 8 concurrent clients.

Runs against the bench database (``rta_bench``, never the one RTA_DATABASE_URL
names). Starts the real server (``manage.py rungrpc --processes N``, N gRPC
processes sharing a free loopback port through SO_REUSEPORT) and sends
CreateOrUpdateSession requests carrying five updates each, the shape of a live
ingest: update_heartbeat, update_details, extend_time_range, update_markers
(one lap marker) and set_state. Each client thread has its own channel and
updates its own sessions (round robin over ``--sessions-per-client``), so the
figures measure the server rather than row-lock contention. Bench sessions are
named ``bench-grpc-*`` and deleted before and after the run. Besides calls/s it
reports CPU per call of the server processes, of the PostgreSQL backends serving
them and of the client, since all three share the machine's cores.

Usage: python -m bench grpc_sessions [--calls N] [--clients 1,8] [--warmup N]
                                     [--sessions-per-client N] [--workers N] [--processes 1,2]
"""

import argparse
import os
import sys
import threading
import time
from datetime import UTC, datetime

from bench import common

NAME = "grpc_sessions"
TARGET_CALLS_PER_SECOND = 1000.0
PREFIX = "bench-grpc-"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench grpc_sessions", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="timed calls per client count (split over clients)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first, per client count")
    parser.add_argument("--clients", default="1,8", help="comma-separated client thread counts")
    parser.add_argument("--sessions-per-client", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None, help="server threads (default RTA_GRPC_WORKERS)")
    parser.add_argument("--processes", default="1,2", help="comma-separated server process counts")
    args, _unknown = parser.parse_known_args(argv)  # options meant for other benchmarks are ignored
    args.clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    args.processes = [int(c) for c in str(args.processes).split(",") if c.strip()]
    return args


def request_for(pb, identity, n):
    """The n-th request for a session: five updates, as a live ingest sends them."""
    from google.protobuf import empty_pb2

    U = pb.SessionUpdate
    lap = pb.Marker(id=f"lap-{n % 50}", type="Lap", label=f"Lap {n % 50 + 1}", details_json='{"valid": true}')
    lap.start_time.value = n * 1_000_000_000
    lap.end_time.value = (n + 1) * 1_000_000_000
    return pb.CreateOrUpdateSessionRequest(
        identity=identity,
        create_if_not_exists=pb.CreateOrUpdateSessionRequest.CreateIfNotExists(state=2),
        updates=[
            U(update_heartbeat=empty_pb2.Empty()),
            U(update_details=U.DetailsMap(details={"Lap": str(n % 50 + 1), "Fuel": f"{100 - n % 100}"})),
            U(extend_time_range=pb.TimeRange(start_time=0, end_time=(n + 1) * 1_000_000_000)),
            U(update_markers=U.MarkersMap(markers_by_category={"Laps": U.MarkersList(markers=[lap])})),
            U(set_state=2),
        ],
    )


def run_clients(port, clients, calls, sessions_per_client, pb, pb_grpc):
    """Send ``calls`` requests from ``clients`` threads.

    Returns (wall seconds, process CPU seconds, per-call latencies in ms).
    """
    import grpc

    per_client = [calls // clients + (1 if i < calls % clients else 0) for i in range(clients)]
    channels = [common.grpc_channel(f"127.0.0.1:{port}") for _ in range(clients)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=10)
    # Requests are built up front so the timed loop measures the call, not protobuf construction.
    plans = [
        [request_for(pb, f"{PREFIX}{c}-{n % sessions_per_client}", n) for n in range(count)]
        for c, count in enumerate(per_client)
    ]
    latencies = [[] for _ in range(clients)]
    errors = []
    start = threading.Barrier(clients + 1)

    def client(index):
        stub = pb_grpc.SessionStoreStub(channels[index])
        call = stub.CreateOrUpdateSession
        out = latencies[index]
        start.wait()
        try:
            for request in plans[index]:
                began = time.perf_counter()
                call(request, timeout=30)
                out.append((time.perf_counter() - began) * 1000.0)
        except Exception as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), name=f"bench-client-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began, cpu_began = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    for channel in channels:
        channel.close()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    return elapsed, cpu, [x for per in latencies for x in per]


def server_pids(port):
    """Process ids of the ``rungrpc`` processes listening on ``port`` (the parent and any workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"rungrpc" in argv and b"--port" in argv and argv[argv.index(b"--port") + 1 :][:1] == [str(port).encode()]:
            pids.append(int(entry))
    return pids


def backend_pids(server_pids_):
    """PostgreSQL backend process ids serving those server processes (their pools tag application_name)."""
    from django.db import connection

    names = [f"rta:{pid}" for pid in server_pids_]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", [names])
        return [row[0] for row in cursor.fetchall()]


def cpu_of(pids):
    """Summed CPU seconds of ``pids`` (processes that have gone count as 0)."""
    total = 0.0
    for pid in pids:
        try:
            total += common.cpu_seconds(pid)
        except OSError:
            pass
    return total


def _delete_bench_sessions():
    from sessions_app.models import Session

    Session.objects.filter(identity__startswith=PREFIX).delete()


def main(argv=None):
    args = parse_args(argv)
    url = common.setup_bench_django()

    from django.db import connections
    from rta.toolkit.api import session_service_pb2 as pb
    from rta.toolkit.api import session_service_pb2_grpc as pb_grpc

    _delete_bench_sessions()
    results = {}
    try:
        for processes in args.processes:
            with common.grpc_server(
                url, processes=processes, extra_env={"RTA_GRPC_WORKERS": str(args.workers)} if args.workers else None
            ) as port:
                for clients in args.clients:
                    run_clients(port, clients, args.warmup, args.sessions_per_client, pb, pb_grpc)
                    # Server and PostgreSQL CPU per call: the server processes and the backends their pools
                    # hold (the warm-up has opened them); a backend opened during the run counts from zero.
                    servers = server_pids(port)
                    backends = backend_pids(servers)
                    server_cpu, pg_cpu = cpu_of(servers), cpu_of(backends)
                    seconds, cpu, samples = run_clients(
                        port, clients, args.calls, args.sessions_per_client, pb, pb_grpc
                    )
                    server_cpu = cpu_of(servers) - server_cpu
                    pg_cpu = cpu_of(set(backends) | set(backend_pids(servers))) - pg_cpu
                    rate = len(samples) / seconds
                    key = f"{processes}_processes_{clients}_clients"
                    results[key] = r = {
                        "server_processes": processes,
                        "clients": clients,
                        "calls": len(samples),
                        "seconds": round(seconds, 3),
                        "calls_per_second": round(rate, 1),
                        "client_cpu_ms_per_call": round(cpu / len(samples) * 1000, 3),
                        "server_cpu_ms_per_call": round(server_cpu / len(samples) * 1000, 3),
                        "postgres_cpu_ms_per_call": round(pg_cpu / len(samples) * 1000, 3),
                        "load_average": round(os.getloadavg()[0], 2),
                        "latency": common.summary(samples),
                        "meets_target": rate >= TARGET_CALLS_PER_SECOND,
                    }
                    common.console.print(
                        f"{processes} server process(es), {clients} client(s): {rate:8.0f} calls/s   "
                        f"p50 {r['latency']['p50_ms']:.2f} ms   p95 {r['latency']['p95_ms']:.2f} ms   CPU ms/call: "
                        f"server {r['server_cpu_ms_per_call']:.2f}, PostgreSQL {r['postgres_cpu_ms_per_call']:.2f}, "
                        f"client {r['client_cpu_ms_per_call']:.2f}   load {r['load_average']:.2f}"
                    )
    finally:
        _delete_bench_sessions()
        connections.close_all()

    common.print_table(
        f"SessionStore.CreateOrUpdateSession over gRPC (manage.py rungrpc, 5 updates per call, "
        f"{args.calls} calls after {args.warmup} warm-up)",
        [
            "server processes",
            "clients",
            "calls/s",
            "p50 ms",
            "p95 ms",
            "max ms",
            "CPU ms/call server",
            "PostgreSQL",
            "client",
            f"target ≥ {TARGET_CALLS_PER_SECOND:.0f}/s",
        ],
        [
            [
                r["server_processes"],
                r["clients"],
                f"{r['calls_per_second']:.0f}",
                f"{r['latency']['p50_ms']:.2f}",
                f"{r['latency']['p95_ms']:.2f}",
                f"{r['latency']['max_ms']:.1f}",
                f"{r['server_cpu_ms_per_call']:.2f}",
                f"{r['postgres_cpu_ms_per_call']:.2f}",
                f"{r['client_cpu_ms_per_call']:.2f}",
                "yes" if r["meets_target"] else "[red]NO[/red]",
            ]
            for r in results.values()
        ],
        caption="Updates: update_heartbeat, update_details, extend_time_range, update_markers, set_state. "
        "The server runs in its own process(es); the client threads share this one. CPU per call: the server "
        "processes, the PostgreSQL backends serving them, and this client process (all share the machine's cores).",
    )
    data = {
        "benchmark": NAME,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": common.redact(url),
        "environment": common.environment(),
        "method": {
            "server": "manage.py rungrpc --processes N on 127.0.0.1 (SO_REUSEPORT), every registered service",
            "request": "CreateOrUpdateSession with create_if_not_exists and 5 updates: update_heartbeat, "
            "update_details, extend_time_range, update_markers (1 marker), set_state",
            "clients": "one thread and one channel per client, blocking unary calls, each client updating its "
            f"own {args.sessions_per_client} sessions round robin",
            "calls": args.calls,
            "warmup": args.warmup,
            "cpu": "user + system CPU of the server processes and of the PostgreSQL backends their pools hold "
            "(/proc), and of the client process, over the timed calls, divided by the calls",
        },
        "target_calls_per_second": TARGET_CALLS_PER_SECOND,
        "runs": results,
    }
    path = common.write_results(NAME, data)
    common.console.print(f"results written to {path.relative_to(common.PROJECT_DIR)}")
    best = max(r["calls_per_second"] for r in results.values())
    if best < TARGET_CALLS_PER_SECOND:
        common.console.print(f"[yellow]target missed: best {best:.0f} calls/s[/yellow]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
