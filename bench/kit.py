"""The data adapter kit encoding samples from numpy arrays into chunks (issue 14; rta_kit.chunking).

Target: >= 50 M samples/s for periodic int16, periodic f64 and timestamped f64, from arrays to
``Chunk``s (each one serialized list on the stable grid, ready for the wire), in this process, one
thread. No server, no database: what an adapter spends turning what it read into chunks.

  periodic s16 / f64    ``periodic_chunks``: 100 Hz channels (a 10 ms interval; the grid's 10 s
                        windows hold 1000 samples), a start time and an array of values each
  periodic f64, times   ``series_chunks``: the same from an int64 ns time array (interval detected)
  timestamped f64       ``series_chunks(kind="timestamped")``: ~100 Hz with a few µs of jitter
                        (the gaps' common divisor is 1 µs: 2-byte deltas)
  timestamped f64 irregular   gaps of 1-20 ms at 1 ns resolution (4-byte deltas; informative)
  ... + LZ4 framing     the chunks framed and compressed (``wire.ChunkStreamWriter``), what
                        ``rta_kit.service`` sends (informative)

Every case is checked: the chunks hold every sample once. Each figure is the best of ``--repeat``
runs (wall clock; CPU seconds of this process beside it).

Usage: python -m bench kit [--samples N] [--channels N] [--repeat N]
"""

import argparse
import platform
import time

import numpy as np

from bench import common

NAME = "kit"
TARGET = 50e6
INTERVAL = 10_000_000  # 100 Hz
T0 = 1_700_000_000 * 1_000_000_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench kit", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2_000_000, help="samples per channel")
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args, _unknown = parser.parse_known_args(argv)  # options meant for other benchmarks are ignored
    return args


def _signals(samples, channels):
    rng = np.random.default_rng(14)
    walks = np.cumsum(rng.integers(-40, 41, (channels, samples)), axis=1)
    s16 = np.clip(walks, -32768, 32767).astype(np.int16)
    f64 = walks.astype(np.float64) * 0.01
    regular = T0 + np.arange(samples, dtype=np.int64) * INTERVAL
    jitter = regular + rng.integers(0, 4, samples) * 1000
    irregular = T0 + np.cumsum(rng.integers(1_000_000, 20_000_000, samples))
    return s16, f64, regular, jitter, irregular


def _cases(s16, f64, regular, jitter, irregular):
    from rta_kit.chunking import periodic_chunks, series_chunks
    from rta_kit.grid import ChunkGrid

    grid = ChunkGrid.for_interval(INTERVAL)
    channels = range(len(s16))
    return [
        ("periodic s16", True, lambda: [c for i in channels for c in periodic_chunks(i, T0, INTERVAL, s16[i], "s16")]),
        ("periodic f64", True, lambda: [c for i in channels for c in periodic_chunks(i, T0, INTERVAL, f64[i])]),
        ("periodic f64, times", False, lambda: [c for i in channels for c in series_chunks(i, regular, f64[i])]),
        (
            "timestamped f64",
            True,
            lambda: [c for i in channels for c in series_chunks(i, jitter, f64[i], "timestamped", grid=grid)],
        ),
        (
            "timestamped f64 irregular",
            False,
            lambda: [c for i in channels for c in series_chunks(i, irregular, f64[i], "timestamped", grid=grid)],
        ),
    ]


def _framed(chunks):
    from rta_kit import wire

    writer = wire.ChunkStreamWriter()
    return sum(len(writer.chunk(c.start, c.end, list(c.channel_ids), c.payload)) for c in chunks)


def _best(fn, repeat):
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out, min(runs)


def main(argv=None):
    args = parse_args(argv)
    load_before = common.warn_if_busy("before the run")
    import rta_kit  # noqa: F401  (the generated protobuf modules on the path)

    signals = _signals(args.samples, args.channels)
    total = args.samples * args.channels
    results, rows = {}, []
    for name, targeted, fn in _cases(*signals):
        chunks, (wall, cpu) = _best(fn, args.repeat)
        counted = sum(c.samples for c in chunks)
        if counted != total:
            raise RuntimeError(f"{name}: the chunks hold {counted} samples, not {total}")
        payload = sum(len(c.payload) for c in chunks)
        _, (frame_wall, _) = _best(lambda: _framed(chunks), max(1, args.repeat // 2))
        rate = total / wall
        with_wire = total / (wall + frame_wall)
        results[name] = {
            "samples": total,
            "chunks": len(chunks),
            "payload_bytes": payload,
            "seconds": round(wall, 4),
            "cpu_seconds": round(cpu, 4),
            "samples_per_second": rate,
            "framing_seconds": round(frame_wall, 4),
            "samples_per_second_with_lz4_framing": with_wire,
            "target": TARGET if targeted else None,
        }
        verdict = ("met" if rate >= TARGET else "[red]MISSED[/red]") if targeted else ""
        rows.append(
            (
                name,
                f"{len(chunks):,}",
                f"{total / len(chunks):,.0f}",
                f"{rate / 1e6:,.1f} M",
                f"{total / cpu / 1e6:,.1f} M" if cpu else "—",
                f"{with_wire / 1e6:,.1f} M",
                f"≥ 50 M: {verdict}" if targeted else "",
            )
        )
    load_after = common.machine_load()
    common.print_table(
        f"adapter kit: arrays -> chunks ({args.channels} channels x {args.samples:,} samples, best of {args.repeat})",
        ["case", "chunks", "samples/chunk", "samples/s", "samples/CPU s", "+ LZ4 framing", "target"],
        rows,
        caption=f"load average before {load_before['load_1min']}, after {load_after['load_1min']} "
        f"on {load_after['cpus']} CPUs",
    )
    path = common.write_results(
        NAME,
        {
            "args": vars(args),
            "load_before": load_before,
            "load_after": load_after,
            "environment": {"python": platform.python_version(), "platform": platform.platform()},
            "results": results,
        },
    )
    common.console.print(f"results: {path}")
    missed = [name for name, r in results.items() if r["target"] and r["samples_per_second"] < TARGET]
    if missed:
        common.console.print(f"[yellow]targets missed: {', '.join(missed)}[/yellow]")
    return 0  # targets missed are reported above; `make bench` goes on to the next benchmark


if __name__ == "__main__":
    raise SystemExit(main())
