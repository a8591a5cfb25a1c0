"""Auth on against auth off: REST list p95 and gRPC CreateOrUpdateSession calls/s, in one run (issue 15).

Target: with RTA_AUTH_ENABLED on, the REST list p95 is within 10 % of the same server's with auth off
(on/off ≤ 1.10) and CreateOrUpdateSession calls/s too (on/off ≥ 0.90).

Servers of each kind run side by side against the bench database (``rta_bench``, seeded as
``sessions_rest`` seeds it: 100,000 sessions): one with auth off, one with auth on against an
independent OpenID Connect issuer running in this process (``tests.auth_issuer``: discovery + JWKS
over HTTP, RS256 tokens, as an identity provider would serve them) with RTA_AUTH_FOLDERS_CLAIM set.
Every token is verified once (signature, claims) and then remembered until it expires, as a
server does for a busy client. The two are measured interleaved, so the machine's drifting
speed (other work on it) touches both alike:

  list        GET /rta/v2/sessions?pageSize=50 over one keep-alive connection per server
              (``sessions_rest``), requests alternating between the servers one by one
  grpc        CreateOrUpdateSession with five updates (the ``grpc_sessions`` request) from
              ``--clients`` threads, one channel each, against ``manage.py rungrpc`` (1 process),
              in rounds alternating between the servers (and which goes first)
  list_folder (auth on only, informational) the list with a token limited to one folder's
              sub-tree (season-2025, ~30 % of the sessions): the folder condition in SQL

Usage: python -m bench auth [--sessions N] [--list-calls N] [--rounds N] [--grpc-calls N]
                            [--clients N] [--warmup N]
"""

import argparse
import contextlib
import http.client
import json
import os
import sys
from datetime import UTC, datetime

from bench import common, grpc_sessions, sessions_rest

NAME = "auth"
MAX_LIST_P95_RATIO = 1.10  # auth on / auth off
MIN_CALLS_RATIO = 0.90
FOLDERS_CLAIM = "rta_folders"
FOLDER = "season-2025"
LIST_PATH = "/rta/v2/sessions?pageSize=50"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench auth", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=int(os.environ.get("RTA_BENCH_SESSIONS", 100_000)))
    parser.add_argument("--rounds", type=int, default=10, help="gRPC rounds (each measures both servers)")
    parser.add_argument("--list-calls", type=int, default=400, help="timed list requests per server")
    parser.add_argument("--grpc-calls", type=int, default=1000, help="timed gRPC calls per round and server")
    parser.add_argument("--clients", type=int, default=4, help="gRPC client threads")
    parser.add_argument("--warmup", type=int, default=10, help="untimed list requests per server first")
    args, _unknown = parser.parse_known_args(argv)  # options meant for other benchmarks are ignored
    return args


@contextlib.contextmanager
def bearer(token):
    """Clients made inside send ``token`` (``rta_site.auth.client`` reads RTA_AUTH_TOKEN); none without one."""
    saved = {k: os.environ.pop(k) for k in ("RTA_AUTH_TOKEN", "RTA_AUTH_CLIENT_ID") if k in os.environ}
    if token:
        os.environ["RTA_AUTH_TOKEN"] = token
    try:
        yield
    finally:
        os.environ.pop("RTA_AUTH_TOKEN", None)
        os.environ.update(saved)


def server_env(issuer=None):
    if issuer is None:
        return {"RTA_AUTH_ENABLED": "false"}
    return {
        "RTA_AUTH_ENABLED": "true",
        "RTA_AUTH_AUTHORITY": issuer.url,
        "RTA_AUTH_AUDIENCE": "rta",
        "RTA_AUTH_FOLDERS_CLAIM": FOLDERS_CLAIM,
    }


def check_refused_without_token(port):
    """Auth is really on: a list without a token is 401."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", LIST_PATH)
        status = conn.getresponse().status
    finally:
        conn.close()
    if status != 401:
        raise RuntimeError(f"the auth-on server answered {status} to a request without a token")


def measure_list(client, calls, warmup=0):
    return common.measure(lambda: client.request("GET", LIST_PATH), repeat=calls, warmup=warmup)


def measure_lists_interleaved(clients, tokens, calls):
    """``calls`` timed list requests per client, taking turns one request at a time (the order rotating)."""
    out = {name: [] for name in clients}
    names = list(clients)
    for i in range(calls):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            with bearer(tokens[name]):
                out[name] += measure_list(clients[name], 1)
    return out


def main(argv=None):
    args = parse_args(argv)
    url = common.setup_bench_django()
    sessions_rest.seed(args.sessions)

    from django.db import connections
    from rta.toolkit.api import session_service_pb2 as pb
    from rta.toolkit.api import session_service_pb2_grpc as pb_grpc

    from tests.auth_issuer import Issuer

    issuer = Issuer()
    token = issuer.token("rta.read rta.write", lifetime=3600)
    folder_token = issuer.token("rta.read", lifetime=3600, **{FOLDERS_CLAIM: [FOLDER]})
    load_before = common.warn_if_busy("before measuring")
    grpc_runs = {"off": [], "on": []}  # (calls, seconds) per round
    grpc_sessions._delete_bench_sessions()
    try:
        with (
            common.http_server(url, extra_env=server_env(), log_name="server-auth-off.log") as (host, off_port),
            common.http_server(url, extra_env=server_env(issuer), log_name="server-auth-on.log") as (_, on_port),
        ):
            check_refused_without_token(on_port)
            clients = {
                "off": sessions_rest.Client(host, off_port),
                "on": sessions_rest.Client(host, on_port),
                "folder": sessions_rest.Client(host, on_port),
            }
            tokens = {"off": None, "on": token, "folder": folder_token}
            try:
                for side, client in clients.items():
                    with bearer(tokens[side]):
                        measure_list(client, 0, args.warmup)
                samples = measure_lists_interleaved(clients, tokens, args.list_calls)
                with bearer(folder_token):
                    folder_page = len(json.loads(clients["folder"].request("GET", LIST_PATH))["sessions"])
            finally:
                for client in clients.values():
                    client.close()
        for side in ("off", "on"):
            common.console.print(
                f"list, auth {side:<3}: p50 {common.percentile(samples[side], 50):6.2f} ms   "
                f"p95 {common.percentile(samples[side], 95):6.2f} ms"
            )

        with (
            common.grpc_server(url, extra_env=server_env()) as off_port,
            common.grpc_server(url, extra_env=server_env(issuer)) as on_port,
        ):
            ports = {"off": off_port, "on": on_port}
            for side in ("off", "on"):
                with bearer(tokens[side]):
                    grpc_sessions.run_clients(ports[side], args.clients, 200, 4, pb, pb_grpc)
            for round_ in range(args.rounds):
                for side in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                    with bearer(tokens[side]):
                        seconds, _, lat = grpc_sessions.run_clients(
                            ports[side], args.clients, args.grpc_calls, 4, pb, pb_grpc
                        )
                    grpc_runs[side].append((len(lat), seconds))
                    common.console.print(
                        f"gRPC round {round_ + 1}, auth {side:<3}: {len(lat) / seconds:7.0f} calls/s", highlight=False
                    )
    finally:
        issuer.close()
        grpc_sessions._delete_bench_sessions()
        connections.close_all()

    list_p95 = {side: common.percentile(samples[side], 95) for side in ("off", "on", "folder")}
    rates = {side: sum(c for c, _ in runs) / sum(s for _, s in runs) for side, runs in grpc_runs.items()}
    list_ratio = list_p95["on"] / list_p95["off"]
    calls_ratio = rates["on"] / rates["off"]
    results = {
        "list": {
            "request": f"GET {LIST_PATH}",
            "auth_off": common.summary(samples["off"]),
            "auth_on": common.summary(samples["on"]),
            "p95_ratio_on_off": round(list_ratio, 3),
            "meets_target": list_ratio <= MAX_LIST_P95_RATIO,
        },
        "list_folder_restricted": {
            "request": f"GET {LIST_PATH} with a token limited to {FOLDER}",
            "auth_on": common.summary(samples["folder"]),
            "page_sessions": folder_page,
        },
        "grpc": {
            "request": "CreateOrUpdateSession, 5 updates (bench.grpc_sessions)",
            "clients": args.clients,
            "auth_off_calls_per_second": round(rates["off"], 1),
            "auth_on_calls_per_second": round(rates["on"], 1),
            "rounds": {side: [round(c / s, 1) for c, s in runs] for side, runs in grpc_runs.items()},
            "ratio_on_off": round(calls_ratio, 3),
            "meets_target": calls_ratio >= MIN_CALLS_RATIO,
        },
    }
    common.print_table(
        f"Auth on against auth off (list: {args.list_calls} requests per server, interleaved; gRPC: "
        f"{args.rounds} alternating rounds of {args.grpc_calls} calls per server, {args.clients} clients)",
        ["measure", "auth off", "auth on", "on / off", "target"],
        [
            [
                "REST list p95 (ms)",
                f"{list_p95['off']:.2f}",
                f"{list_p95['on']:.2f}",
                f"{list_ratio:.3f}",
                f"≤ {MAX_LIST_P95_RATIO:.2f}: " + ("met" if results["list"]["meets_target"] else "[red]MISSED[/red]"),
            ],
            [
                "REST list p50 (ms)",
                f"{common.percentile(samples['off'], 50):.2f}",
                f"{common.percentile(samples['on'], 50):.2f}",
                f"{common.percentile(samples['on'], 50) / common.percentile(samples['off'], 50):.3f}",
                "",
            ],
            [
                f"REST list p95, token limited to {FOLDER} (ms)",
                "",
                f"{list_p95['folder']:.2f}",
                f"{list_p95['folder'] / list_p95['off']:.3f}",
                "",
            ],
            [
                "gRPC CreateOrUpdateSession calls/s",
                f"{rates['off']:.0f}",
                f"{rates['on']:.0f}",
                f"{calls_ratio:.3f}",
                f"≥ {MIN_CALLS_RATIO:.2f}: " + ("met" if results["grpc"]["meets_target"] else "[red]MISSED[/red]"),
            ],
        ],
        caption="Auth on: RS256 tokens of an independent OpenID Connect issuer, verified once and then remembered "
        "until they expire. Both servers of a kind run side by side and are measured interleaved.",
    )
    data = {
        "benchmark": NAME,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": common.redact(url),
        "environment": common.environment(),
        "load_before": load_before,
        "load_after": common.machine_load(),
        "method": {
            "list_calls_per_server": args.list_calls,
            "grpc_rounds": args.rounds,
            "grpc_calls_per_round": args.grpc_calls,
            "grpc_clients": args.clients,
            "issuer": "tests.auth_issuer (in the benchmark process), RS256",
        },
        "targets": {"list_p95_ratio_at_most": MAX_LIST_P95_RATIO, "calls_ratio_at_least": MIN_CALLS_RATIO},
        "results": results,
    }
    path = common.write_results(NAME, data)
    common.console.print(f"results written to {path.relative_to(common.PROJECT_DIR)}")
    missed = [name for name in ("list", "grpc") if not results[name]["meets_target"]]
    if missed:
        common.console.print(f"[yellow]targets missed: {', '.join(missed)}[/yellow]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
