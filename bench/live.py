"""Live streaming: one writer at 100 channels x 1 kHz, 1/10/100 WebSocket clients subscribed to everything.

Runs real server processes against the bench database and Redis
(RTA_REDIS_URL, default ``redis://127.0.0.1:6379/0``; the bench touches only
its own ``bench-live-*`` keys and removes them) in two configurations:
``single``, one ``manage.py serve`` ingesting through gRPC DataWriter,
storing and streaming (what ``make run`` starts), and ``split``,
``manage.py rungrpc`` ingesting and storing while ``manage.py serve
--no-grpc`` streams, the two sharing Redis (``sink``, optional, writes
through ``DataSink`` from the writer's process instead of gRPC). For each
client count a new open session is created, the clients (asyncio
``websockets``, spread over ``--client-processes`` processes) connect and
subscribe to all channels and events, then a writer process writes periodic
data: every ``--period-ms`` (50) one item of that many samples per channel,
for ``--seconds`` (8). A run with no client gives the CPU baseline.

Latency = when a client has decoded an item (LZ4 frame + protobuf) - when
the writer issued the item's write call (a shared-memory array holds that
wall-clock time per item). One client per process verifies every item
(exactly once, in order per channel) and times each; the others count items
and time the oldest item of each message. CPU per client = (streaming
server CPU with N clients - without clients) / N.

Usage: python -m bench live [--config single,split] [--clients 1,10,100] [--seconds 8] [--period-ms 50]
                            [--channels 100] [--client-processes 4]
"""

import argparse
import array
import asyncio
import contextlib
import multiprocessing
import os
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime

from bench import common

NAME = "live"
PREFIX = "bench-live-"
SUBPROTOCOL = "mat.ocs.rta.stream-lz4"
TARGET_P99_MS = 50.0
MS = 1_000_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench live", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,10,100", help="comma-separated WebSocket client counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="writing time per run")
    parser.add_argument("--period-ms", type=int, default=50, help="write period (samples per item at 1 kHz)")
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--client-processes", type=int, default=4, help="processes the clients are spread over")
    parser.add_argument(
        "--config",
        default="single,split",
        help="comma-separated configurations: " + "; ".join(f"{k}: {v[2]}" for k, v in CONFIGS.items()),
    )
    args, _unknown = parser.parse_known_args(argv)
    args.clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    args.configs = [c.strip() for c in str(args.config).split(",") if c.strip()]
    for config in args.configs:
        if config not in CONFIGS:
            parser.error(f"unknown configuration {config!r} ({', '.join(CONFIGS)})")
    return args


# --- the server -------------------------------------------------------------------------------------


def _wait_ready(proc, log_path, check):
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
        try:
            if check():
                return
        except Exception:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not answer within 60 s; see {log_path}")
        time.sleep(0.2)


def _http_ready(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        return response.status == 200


def _grpc_ready(port):
    import grpc

    with common.grpc_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=2)
    return True


@contextlib.contextmanager
def deployment(name, database_url, redis_url):
    """The server processes of a deployment; yields ``(http port, grpc port, edge pid, ingest pid)``.

    ``single``: one ``manage.py serve`` (gRPC ingest and WebSocket streaming in one process);
    ``split``: ``manage.py rungrpc`` ingests, ``manage.py serve --no-grpc`` streams, sharing Redis.
    """
    http_port, grpc_port = common.free_port(), common.free_port()
    data_dir = tempfile.TemporaryDirectory(prefix="rta-bench-live-")
    env = {
        **os.environ,
        "RTA_DATABASE_URL": database_url,
        "RTA_REDIS_URL": redis_url,
        "RTA_LOG_LEVEL": "WARNING",
        "RTA_DEBUG": "false",
        "RTA_DATA_PATH": data_dir.name,
    }
    serve = [sys.executable, "manage.py", "serve", "--bind", "127.0.0.1", "--http-port", str(http_port)]
    commands = {"edge": serve + (["--grpc-port", str(grpc_port)] if name == "single" else ["--no-grpc"])}
    if name == "split":
        commands["ingest"] = [sys.executable, "manage.py", "rungrpc", "--bind", "127.0.0.1", "--port", str(grpc_port)]
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    procs, logs = {}, []
    try:
        for role, command in commands.items():
            log_path = common.RESULTS_DIR / f"live-{name}-{role}.log"
            log = open(log_path, "wb")
            logs.append(log)
            procs[role] = subprocess.Popen(
                command, cwd=common.PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            serves_grpc = role == "ingest" or name == "single"
            serves_http = role == "edge"
            _wait_ready(
                procs[role],
                log_path,
                lambda: (not serves_http or _http_ready(http_port)) and (not serves_grpc or _grpc_ready(grpc_port)),
            )
        edge = procs["edge"].pid
        yield http_port, grpc_port, edge, procs["ingest"].pid if "ingest" in procs else edge
    finally:
        for proc in procs.values():  # only the processes started here
            common.stop_process(proc, timeout=20)
        for log in logs:
            log.close()
        data_dir.cleanup()


def set_state(grpc_port, identity, state):
    from rta.toolkit.api import session_service_pb2 as spb
    from rta.toolkit.api import session_service_pb2_grpc as sgrpc

    with common.grpc_channel(f"127.0.0.1:{grpc_port}") as channel:
        sgrpc.SessionStoreStub(channel).CreateOrUpdateSession(
            spb.CreateOrUpdateSessionRequest(
                identity=identity,
                create_if_not_exists=spb.CreateOrUpdateSessionRequest.CreateIfNotExists(state=state),
                updates=[spb.SessionUpdate(set_state=state)],
            ),
            timeout=30,
        )


# --- the writer (its own process, so it does not share the clients' interpreter) --------------------


def _ticks(identity, t0, ticks, period_ns, channels, sent, ready):
    """``(kind, item)`` pairs tick by tick on schedule; ``sent[k * channels + c]`` = wall ns of each one's write call."""
    from rta.model import data_pb2

    samples = period_ns // MS
    buffers = [struct.pack(f"<{samples}h", *[(c * 31 + i) % 30000 for i in range(samples)]) for c in range(channels)]
    ready.set()
    start = time.time_ns()
    for k in range(ticks):
        due = start + (k + 1) * period_ns
        delay = (due - time.time_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        for c in range(channels):
            item = data_pb2.PeriodicData(
                channel_id=c, start_timestamp=t0 + k * period_ns, interval=MS, samples=samples, buffer=buffers[c]
            )
            sent[k * channels + c] = time.time_ns()
            yield item


def grpc_writer(grpc_port, identity, t0, ticks, period_ns, channels, sent, ready):
    """The writer as a gRPC DataWriter client: one WriteDataStream."""

    from rta_site import protos

    protos.ensure_importable()
    from rta.toolkit.api import chunk_service_pb2 as cpb
    from rta.toolkit.api import chunk_service_pb2_grpc as cgrpc

    def messages():
        yield cpb.WriteDataStreamMessage(data_identity=identity)
        for item in _ticks(identity, t0, ticks, period_ns, channels, sent, ready):
            yield cpb.WriteDataStreamMessage(periodic_data=item)
        yield cpb.WriteDataStreamMessage(flush_marker="end")

    with common.grpc_channel(f"127.0.0.1:{grpc_port}") as channel:
        replies = list(cgrpc.DataWriterStub(channel).WriteDataStream(messages(), timeout=600))
    assert [r.flush_completed for r in replies] == ["end"]


def sink_writer(grpc_port, identity, t0, ticks, period_ns, channels, sent, ready):
    """The writer as an ingest process of its own: ``DataSink`` against the same database and Redis."""
    common.setup_bench_django(verbose=False)
    from django.db import connections

    from data_app.services.sink import DataSink

    sink = DataSink(identity)
    for item in _ticks(identity, t0, ticks, period_ns, channels, sent, ready):
        sink.add("periodic", item)
    sink.flush()
    connections.close_all()


WRITERS = {"grpc": grpc_writer, "sink": sink_writer}
# configuration -> (deployment, writer, description)
CONFIGS = {
    "single": ("single", "grpc", "one `serve` process ingests (gRPC DataWriter), stores and streams"),
    "split": ("split", "grpc", "`rungrpc` ingests and stores, `serve --no-grpc` streams, sharing Redis"),
    "sink": ("split", "sink", "an ingest process writes through DataSink (no gRPC), `serve --no-grpc` streams"),
}


# --- the clients (in worker processes, so that decoding 100 clients does not queue on one core) -------


class Client:
    """One WebSocket client. A verifier checks every item (once, in order per channel) and times each;
    the others count items and time the oldest item of each message, which keeps 100 clients cheap
    enough to measure the server rather than the clients on a small machine."""

    def __init__(self, ticks, channels, verify):
        self.verify = verify
        self.seen = bytearray(ticks * channels) if verify else None
        self.channels = channels
        self.latencies_ms = array.array("d")
        self.last = {}
        self.out_of_order = 0
        self.items = 0

    async def run(self, url, t0, period_ns, sent, subscribed, received, done):
        import lz4.frame
        import websockets
        from rta.model.net import stream_pb2

        async with websockets.connect(
            url,
            subprotocols=[SUBPROTOCOL],
            compression=None,
            max_size=None,
            open_timeout=60,
            ping_interval=None,
            proxy=None,
            additional_headers=common.auth_headers(),
        ) as ws:
            first = stream_pb2.StreamDataBurst.FromString(lz4.frame.decompress(await ws.recv()))
            assert first.data[0].WhichOneof("type") == "session_json"
            request = stream_pb2.StreamRequest(
                subscribe=stream_pb2.StreamSubscription(all_data_channels=True, all_events=True)
            )
            await ws.send(request.SerializeToString())
            with subscribed.get_lock():
                subscribed.value += 1
            channels, latencies = self.channels, self.latencies_ms
            while not done.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                burst = stream_pb2.StreamDataBurst.FromString(lz4.frame.decompress(message))
                now = time.time_ns()
                items = [d.periodic_data for d in burst.data if d.HasField("periodic_data")]
                if not items:
                    continue
                if self.verify:
                    seen, last = self.seen, self.last
                    for item in items:
                        k = (item.start_timestamp - t0) // period_ns
                        c = item.channel_id
                        index = k * channels + c
                        seen[index] += 1
                        if last.get(c, -1) >= k:
                            self.out_of_order += 1
                        last[c] = k
                        latencies.append((now - sent[index]) / 1e6)
                else:
                    item = items[0]  # the oldest of the message
                    latencies.append(
                        (now - sent[(item.start_timestamp - t0) // period_ns * channels + item.channel_id]) / 1e6
                    )
                self.items += len(items)
                with received.get_lock():
                    received.value += len(items)

    def result(self, expected):
        if self.verify:
            missing = [i for i, v in enumerate(self.seen) if v == 0]
            lost, duplicated = len(missing), sum(1 for v in self.seen if v > 1)
            missing_ticks = sorted({i // self.channels for i in missing})[:50]
        else:
            lost, duplicated, missing_ticks = max(0, expected - self.items), max(0, self.items - expected), []
        return {
            "verify": self.verify,
            "missing_ticks": missing_ticks,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": self.out_of_order,
            "latencies": self.latencies_ms.tobytes(),
        }


def client_worker(url, count, t0, period_ns, ticks, channels, sent, subscribed, received, done, results):
    """``count`` clients on one event loop; their results (and this process's CPU time) go to ``results``."""
    from rta_site import protos

    protos.ensure_importable()
    clients = [Client(ticks, channels, verify=i == 0) for i in range(count)]

    async def main():
        await asyncio.gather(*(c.run(url, t0, period_ns, sent, subscribed, received, done) for c in clients))

    cpu = time.process_time()
    asyncio.run(main())
    results.put({"clients": [c.result(ticks * channels) for c in clients], "cpu_seconds": time.process_time() - cpu})


def run_phase(http_port, grpc_port, server_pid, ingest_pid, clients, args, writer_name):
    identity = f"{PREFIX}{uuid.uuid4()}"
    set_state(grpc_port, identity, 2)
    period_ns = args.period_ms * MS
    ticks = int(args.seconds * 1000 // args.period_ms)
    t0 = (time.time_ns() // period_ns) * period_ns
    ctx = multiprocessing.get_context("spawn")
    sent = ctx.Array("q", ticks * args.channels, lock=False)
    ready, done = ctx.Event(), ctx.Event()
    subscribed, received = ctx.Value("q", 0), ctx.Value("q", 0)
    results = ctx.Queue()
    writer = ctx.Process(
        target=WRITERS[writer_name],
        name="bench-live-writer",
        args=(grpc_port, identity, t0, ticks, period_ns, args.channels, sent, ready),
    )
    expected = ticks * args.channels
    url = f"ws://127.0.0.1:{http_port}/rta/v2/sessions/{identity}/stream"
    shares = [
        clients // args.client_processes + (1 if i < clients % args.client_processes else 0)
        for i in range(min(clients, args.client_processes))
    ]
    workers = [
        ctx.Process(
            target=client_worker,
            name=f"bench-live-clients-{i}",
            args=(url, n, t0, period_ns, ticks, args.channels, sent, subscribed, received, done, results),
        )
        for i, n in enumerate(shares)
    ]
    common.console.print(f"{args.current}, {clients} client(s): {ticks} ticks x {args.channels} channels ...")
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 120
    while subscribed.value < clients:
        if any(not w.is_alive() for w in workers) or time.monotonic() > deadline:
            done.set()
            raise RuntimeError("a client process failed to connect and subscribe")
        time.sleep(0.05)
    time.sleep(0.5)  # the subscriptions are processed (their back-fill is empty)
    writer.start()
    while not ready.is_set():  # the writer process is up: its ticks start now
        if not writer.is_alive():
            done.set()
            raise RuntimeError("the writer process died before writing")
        time.sleep(0.01)
    cpu0, ingest0, began = common.cpu_seconds(server_pid), common.cpu_seconds(ingest_pid), time.perf_counter()
    writer.join()
    # Let the last items arrive; what has not arrived a minute after the writer finished counts as lost.
    deadline = time.monotonic() + 60
    while received.value < expected * clients and time.monotonic() < deadline:
        time.sleep(0.02)
    elapsed = time.perf_counter() - began
    cpu, ingest_cpu = common.cpu_seconds(server_pid) - cpu0, common.cpu_seconds(ingest_pid) - ingest0
    done.set()
    gathered = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    if writer.exitcode != 0:
        raise RuntimeError(f"the writer failed (exit code {writer.exitcode})")
    set_state(grpc_port, identity, 4)
    per_client = [c for g in gathered for c in g["clients"]]
    missing = sorted({t for c in per_client for t in c["missing_ticks"]})
    if missing:
        common.console.print(
            f"[red]  ticks with items missing: {missing}; the buffer holds "
            f"{buffered_items(identity)} of {expected} items[/red]"
        )
    latencies, verified = array.array("d"), array.array("d")
    for c in per_client:
        latencies.frombytes(c["latencies"])
        if c["verify"]:
            verified.frombytes(c["latencies"])
    return identity, {
        "configuration": args.current,
        "writer": writer_name,
        "clients": clients,
        "items_written": expected,
        "samples_written": expected * (period_ns // MS),
        "seconds": round(elapsed, 2),
        "server_cpu_seconds": round(cpu, 3),
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "ingest_cpu_percent": round(100 * ingest_cpu / elapsed, 1) if ingest_pid != server_pid else None,
        "client_processes": len(workers),
        "client_processes_cpu_percent": round(100 * sum(g["cpu_seconds"] for g in gathered) / elapsed, 1),
        "items_lost": sum(c["lost"] for c in per_client),
        "items_duplicated": sum(c["duplicated"] for c in per_client),
        "out_of_order": sum(c["out_of_order"] for c in per_client),
        "latency_ms": _latency(latencies),
        "verified_clients": sum(1 for c in per_client if c["verify"]),
        "verified_latency_ms": _latency(verified),
    }


def _latency(values):
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(common.percentile(values, 50), 2),
        "p99": round(common.percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


def buffered_items(identity):
    """Items of the session's stream in Redis (to tell a delivery problem from a publishing one)."""
    import lz4.frame
    import redis
    from rta.model.net import stream_pb2

    client = redis.Redis.from_url(os.environ["RTA_REDIS_URL"])
    try:
        return sum(
            len(stream_pb2.StreamDataBurst.FromString(lz4.frame.decompress(f[b"data"])).data)
            for _, f in client.xrange(f"stream:{identity}")
        )
    finally:
        client.close()


def cleanup_redis(redis_url, identities):
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for identity in identities:
            client.delete(f"stream:{identity}", f"sessions:{identity}")
            client.srem("streams", identity)
    finally:
        client.close()


def main(argv=None):
    args = parse_args(argv)
    url = common.setup_bench_django()
    redis_url = os.environ.get("RTA_REDIS_URL") or "redis://127.0.0.1:6379/0"
    load = common.warn_if_busy("before the live benchmark")

    from django.db import connections

    from data_app.models import Chunk
    from sessions_app.models import Session

    os.environ["RTA_REDIS_URL"] = redis_url  # for the sink writer's process
    identities, runs = [], {}
    try:
        for config in args.configs:
            deployment_name, writer, _ = CONFIGS[config]
            args.current = config
            with deployment(deployment_name, url, redis_url) as (http_port, grpc_port, edge_pid, ingest_pid):
                for clients in [0, *args.clients]:
                    identity, run = run_phase(http_port, grpc_port, edge_pid, ingest_pid, clients, args, writer)
                    identities.append(identity)
                    runs[f"{config}_{clients}"] = run
                    latency = run["latency_ms"]
                    common.console.print(
                        f"  streaming server CPU {run['server_cpu_percent']}%, lost {run['items_lost']}, "
                        f"p50 {latency['p50']} ms, p99 {latency['p99']} ms"
                    )
    finally:
        cleanup_redis(redis_url, identities)
        Chunk.objects.filter(identity__startswith=PREFIX).delete()
        Session.objects.filter(identity__startswith=PREFIX).delete()
        connections.close_all()

    rows = []
    for config in args.configs:
        base = runs[f"{config}_0"]
        base_rate = base["server_cpu_seconds"] / base["seconds"]
        for clients in [0, *args.clients]:
            run = runs[f"{config}_{clients}"]
            latency = run["latency_ms"]
            if clients:
                per = (run["server_cpu_seconds"] / run["seconds"] - base_rate) / clients
                run["server_cpu_percent_per_client"] = round(100 * per, 2)
                run["meets_target"] = (
                    run["items_lost"] == 0
                    and run["items_duplicated"] == 0
                    and latency["p99"] is not None
                    and latency["p99"] <= TARGET_P99_MS
                )
            rows.append(
                [
                    config,
                    clients,
                    f"{run['server_cpu_percent']}%",
                    f"{run['ingest_cpu_percent']}%" if run["ingest_cpu_percent"] is not None else "(same)",
                    f"{run['server_cpu_percent_per_client']}%" if clients else "-",
                    f"{run['client_processes_cpu_percent']}%",
                    latency["p50"] if clients else "-",
                    latency["p99"] if clients else "-",
                    latency["max"] if clients else "-",
                    f"{run['items_lost']}/{run['items_duplicated']}" if clients else "-",
                    ("yes" if run["meets_target"] else "[red]NO[/red]") if clients else "",
                ]
            )
    common.print_table(
        f"Live stream: 1 writer, {args.channels} channels x 1 kHz (items of {args.period_ms} samples every "
        f"{args.period_ms} ms), clients subscribed to everything, {args.seconds:.0f} s per run",
        [
            "configuration",
            "clients",
            "streaming CPU",
            "ingest CPU",
            "per client",
            "clients' CPU",
            "p50 ms",
            "p99 ms",
            "max ms",
            "lost/dup",
            f"p99 ≤ {TARGET_P99_MS:.0f} ms, none lost",
        ],
        rows,
        caption="Latency: an item's write call -> the item decoded by a client. CPU in % of one core: streaming = "
        "the `serve` process the clients are connected to (per client: above the run without clients), "
        "ingest = the `rungrpc` process. " + " ".join(f"{k}: {CONFIGS[k][2]}." for k in args.configs),
    )
    data = {
        "benchmark": NAME,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": common.redact(url),
        "redis": common.redact(redis_url),
        "environment": common.environment(),
        "load_before": load,
        "method": {
            "writer": f"its own process, every {args.period_ms} ms one PeriodicData of {args.period_ms} int16 "
            f"samples (1 kHz) per channel, {args.channels} channels, through one DataWriter.WriteDataStream "
            "(or DataSink.add for the sink configuration)",
            "configurations": {k: CONFIGS[k][2] for k in args.configs},
            "clients": f"asyncio websockets clients spread over {args.client_processes} processes, sub-protocol "
            "mat.ocs.rta.stream-lz4, subscribed to all channels and events, decoding every message "
            "(lz4.frame + protobuf) and checking every item arrives once, in order per channel",
            "latency": "client decode time - wall time of the item's write call (request iterator yields it)",
            "seconds": args.seconds,
        },
        "target_p99_ms": TARGET_P99_MS,
        "runs": {str(k): v for k, v in runs.items()},
    }
    path = common.write_results(NAME, data)
    common.console.print(f"results written to {path.relative_to(common.PROJECT_DIR)}")
    return 0  # targets missed are reported above; `make bench` goes on to the next benchmark
