"""Gateway: public REST reads of a session whose data another server holds, against the local fast path.

Two real servers on loopback, in one run, against the bench database
(``rta_bench``): a *data server* (``manage.py serve`` with
``RTA_EXPOSE_DATA_SERVICE=true``, its own temporary ``RTA_DATA_PATH``) holding
the data, written over gRPC as ``bench.data`` writes it (periodic int16
random walk, 10,000-sample bursts, 8 channels at 1 kHz), and a *gateway*
(``manage.py serve`` with ``RTA_DATA_SERVICES=remote=http://...`` pointing at
the data server, no data of its own). Each read is a GET of every channel
over the whole time range by a lean client (``bench.data.http_get``); after a
warm-up of each, ``--repeat`` rounds read every one of them once in turn
(interleaved, so that each sees the same load on a shared machine), and the
best and the median of each are reported:

  local       the data server's own public read of the data (the local fast
              path: stored chunk bytes behind fresh headers) — the baseline
  remote      the gateway's read of a session bound to the data on source
              ``remote`` (no channel bindings, no offset: every chunk is
              relayed byte for byte, only its header rewritten)
  shifted     the same through a binding with a time offset (every chunk
              decoded, shifted, re-encoded by ``rta_kit.transforms``)
  local_shifted  (context) the data server's own read of a local binding with
              the same offset: the local decoding path
  shifted_lz4  (context) ``shifted`` through a second gateway started with
              ``RTA_DATA_TRANSFORMED_COMPRESSION=lz4`` (the default is
              ``none``: transformed chunks go out uncompressed)

Every response is checked: the same number of chunks and payload bytes as
the index holds (and, shifted, first chunk start moved by the offset). CPU
seconds of both server processes are read from /proc, so samples per CPU
second are given too (the machine is shared; wall-clock rates are the
headline).

Targets: remote >= 300 M samples/s, shifted >= 180 M samples/s; the ratio
remote / local is reported.

Usage: python -m bench gateway [--seconds S] [--repeat N] [--channels N]
"""

import argparse
import shutil
import signal
import sys
import tempfile

from bench import common
from bench import data as data_bench

NAME = "gateway"
PREFIX = "bench-gateway-"
IDENTITY = PREFIX + "data"
SOURCE = "remote"
SHIFT = 3600 * data_bench.SECOND
TARGETS = {"remote": 300e6, "shifted": 180e6}
SESSIONS = {  # session -> (source, time offset); the data identity is IDENTITY
    "local": None,  # the data identity read as a session of its own on the data server
    PREFIX + "remote": (SOURCE, 0),
    PREFIX + "shifted": (SOURCE, SHIFT),
    PREFIX + "local-shifted": ("", SHIFT),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds the gRPC write sends for")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds of the reads (best and median reported)")
    parser.add_argument("--channels", type=int, default=8, help="channels written round robin")
    args, _unknown = parser.parse_known_args(argv)
    return args


def create_sessions():
    from sessions_app.services.updates import create_or_update_session

    create_or_update_session(IDENTITY, [("set_state", 4)])
    for session, binding in SESSIONS.items():
        if binding is None:
            continue
        source, offset = binding
        create_or_update_session(
            session,
            [
                ("set_state", 4),
                ("set_data_bindings", [{"source": source, "identity": IDENTITY, "session_time_offset": offset}]),
            ],
        )


def _delete_bench_data():
    from data_app.models import Chunk
    from sessions_app.models import Session

    Session.objects.filter(identity__startswith=PREFIX).delete()
    Chunk.objects.filter(identity__startswith=PREFIX).delete()


def reads(targets, channels_expr, repeat, pids, pids_port=None):
    """GETs of each ``(key, port, session)`` target, interleaved: one warm-up each, then ``repeat`` rounds
    that read every target once, so that each sees the same load on a shared machine. Returns
    ``{key: (last body, figures)}``; the best (fastest) read of each is its figure, with both servers' CPU and
    the gateway's own (the last of ``pids``; None for reads of the data server, on ``pids_port``)."""
    paths = {key: f"/rta/v2/sessions/{session}/data/periodic/{channels_expr}" for key, _, session in targets}
    for key, port, _ in targets:
        data_bench.http_get(port, paths[key])  # warm-up (file cache, pooled connections)
    runs, bodies = {key: [] for key, _, _ in targets}, {}
    for _ in range(repeat):
        for key, port, _ in targets:
            before = [common.cpu_seconds(pid) for pid in pids]
            bodies[key], elapsed = data_bench.http_get(port, paths[key])
            spent = [common.cpu_seconds(pid) - b for pid, b in zip(pids, before)]
            runs[key].append((elapsed, sum(spent), len(bodies[key]), spent[-1] if port != pids_port else None))
    out = {}
    for key, found in runs.items():
        best = min(found)
        out[key] = (
            bodies[key],
            {
                "path": paths[key],
                "bytes": best[2],
                "seconds": [round(r[0], 4) for r in found],
                "best_seconds": round(best[0], 4),
                "median_seconds": round(sorted(r[0] for r in found)[len(found) // 2], 4),
                "servers_cpu_seconds": round(best[1], 4),
                "gateway_cpu_seconds": None if best[3] is None else round(best[3], 4),
            },
        )
    return out


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url = common.setup_bench_django()
    load_before = common.warn_if_busy("before the run")

    from django.db import connections
    from rta.model import data_pb2
    from rta.toolkit.api import chunk_service_pb2 as pb

    with common.console.status("generating signals"):
        signal_i16 = data_bench.random_walk_int16(1 << 22, seed=1)
    load = data_bench.Load("periodic", 10_000, args.channels, signal_i16, None, [0])
    _delete_bench_data()
    store, gateway_store = tempfile.mkdtemp(prefix="rta-bench-gw-data-"), tempfile.mkdtemp(prefix="rta-bench-gw-")
    channels_expr = f"{0x100:X}-{0x100 + args.channels - 1:X}"
    results = {}
    try:
        create_sessions()
        connections.close_all()
        data_env = {"RTA_DATA_PATH": store, "RTA_EXPOSE_DATA_SERVICE": "true"}
        with common.http_server(url, grpc=True, log_name="gateway-data-server.log", extra_env=data_env) as (
            data_port,
            grpc_port,
            data_pid,
        ):
            with common.console.status(f"gRPC write to the data server ({args.seconds:g} s)"):
                results["write"] = data_bench.grpc_write(
                    grpc_port, IDENTITY, load, args.seconds, pb, data_pb2, data_pid
                )
            chunks, samples, packed, _ = data_bench.stored(IDENTITY, "periodic")
            if samples != results["write"]["samples"]:
                raise RuntimeError(f"wrote {results['write']['samples']} samples, the index holds {samples}")
            common.console.print(f"data server holds {samples:,} samples in {chunks:,} chunks ({packed:,} bytes)")
            gateway_env = {
                "RTA_DATA_PATH": gateway_store,
                "RTA_DATA_SERVICES": f"{SOURCE}=http://127.0.0.1:{data_port}",
            }
            gateways = {
                "gateway-server.log": (
                    {},
                    (
                        ("local", IDENTITY, None),
                        ("remote", PREFIX + "remote", "gateway"),
                        ("shifted", PREFIX + "shifted", "gateway"),
                        ("local_shifted", PREFIX + "local-shifted", None),
                    ),
                ),
                "gateway-server-lz4.log": (
                    {"RTA_DATA_TRANSFORMED_COMPRESSION": "lz4"},
                    (("shifted_lz4", PREFIX + "shifted", "gateway"),),
                ),
            }
            first = None
            for log_name, (env, keys) in gateways.items():
                with common.http_server(url, grpc=True, log_name=log_name, extra_env={**gateway_env, **env}) as (
                    gateway_port,
                    _,
                    gateway_pid,
                ):
                    pids = [data_pid, gateway_pid]
                    targets = [(key, gateway_port if server else data_port, session) for key, session, server in keys]
                    with common.console.status(f"REST reads, interleaved: {', '.join(k for k, _, _ in targets)}"):
                        done = reads(targets, channels_expr, args.repeat, pids, data_port)
                    for key, (body, run) in done.items():
                        first = _check(key, body, chunks, packed, first)
                        run.update(
                            samples=samples,
                            samples_per_second=samples / run["best_seconds"],
                            median_samples_per_second=samples / run["median_seconds"],
                            samples_per_cpu_second=samples / run["servers_cpu_seconds"]
                            if run["servers_cpu_seconds"]
                            else None,
                            samples_per_gateway_cpu_second=samples / run["gateway_cpu_seconds"]
                            if run["gateway_cpu_seconds"]
                            else None,
                        )
                        results[key] = run
                        common.console.print(
                            f"{key}: {_m(run['samples_per_second'])} samples/s, median {_m(run['median_samples_per_second'])}"
                            f" ({run['bytes'] / run['best_seconds'] / 1e6:,.0f} MB/s)"
                        )
    finally:
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(gateway_store, ignore_errors=True)
        _delete_bench_data()
        connections.close_all()
    report(results, args, url, load_before)
    return 0


def _check(key, body, chunks, packed, first):
    """Raise unless ``body`` holds the stored chunks (shifted: moved by the offset); the first start seen."""
    served, start, payload = data_bench.walk_headers(body)
    shifted = "shifted" in key
    if served != chunks or (not shifted and payload != packed):
        raise RuntimeError(f"{key}: {served} chunks / {payload} bytes, the index has {chunks} / {packed}")
    first = start if key == "local" else first
    if start != first + (SHIFT if shifted else 0):
        raise RuntimeError(f"{key}: the first chunk starts at {start}, not {first + SHIFT * shifted}")
    return first


def _m(x):
    return "—" if x is None else f"{x / 1e6:,.1f} M"


def report(results, args, url, load_before):
    local = results["local"]["samples_per_second"]
    rows, figures = [], {}
    for key, label in (
        ("local", "local fast path (data server's own read)"),
        ("remote", "gateway, remote source, untransformed"),
        ("shifted", "gateway, remote source, time offset"),
        ("local_shifted", "local decoding path, same offset (context)"),
        ("shifted_lz4", "gateway, time offset, sent as LZ4 (context)"),
    ):
        run = results[key]
        target = TARGETS.get(key)
        ratio = run["samples_per_second"] / local
        met = None if target is None else run["samples_per_second"] >= target
        figures[key] = {
            "value": run["samples_per_second"],
            "per_servers_cpu_second": run["samples_per_cpu_second"],
            "per_gateway_cpu_second": run["samples_per_gateway_cpu_second"],
            "ratio_to_local": ratio,
            "target": target,
            "meets_target": met,
        }
        rows.append(
            [
                label,
                _m(run["samples_per_second"]),
                _m(run["median_samples_per_second"]),
                _m(run["samples_per_cpu_second"]),
                _m(run["samples_per_gateway_cpu_second"]),
                f"{ratio:.2f}",
                "—" if target is None else f"≥ {_m(target)}",
                "—" if met is None else ("yes" if met else "[red]NO[/red]"),
            ]
        )
    load_after = common.machine_load()
    common.print_table(
        f"Gateway reads ({args.channels} channels at 1 kHz, {results['local']['samples']:,} samples, "
        f"{args.repeat} interleaved rounds)",
        [
            "read",
            "samples/s (best)",
            "median",
            "per CPU s (both servers)",
            "per gateway CPU s",
            "× local",
            "target",
            "met",
        ],
        rows,
        caption=f"Load average {load_before['load_1min']} before, {load_after['load_1min']} after, on "
        f"{load_after['cpus']} CPUs; the data server and the gateway share them with the client.",
    )
    method = {
        "servers": "data server (RTA_EXPOSE_DATA_SERVICE) and gateway (RTA_DATA_SERVICES), manage.py serve on "
        "127.0.0.1, one bench database, temporary data paths",
        "data": "periodic int16 random walk, 10,000-sample bursts written over gRPC, "
        f"{args.channels} channels at 1 kHz",
        "reads": "GET of every channel and the whole time range, one warm-up each, then --repeat rounds reading "
        "every target once (interleaved); best and median reported",
        "transformed_compression": "none (the default) for shifted and local_shifted, lz4 for shifted_lz4",
    }
    common.save_results(NAME, url, method, load_before, load_after, figures=figures, runs=results)


if __name__ == "__main__":
    sys.exit(main())
