"""Data Service: write and read throughput, bytes per sample, against a plain PostgreSQL table.

Starts the real server (``manage.py serve``: daphne for REST, gRPC beside it)
on free local ports against the bench database (``rta_bench``) with its own
temporary ``RTA_DATA_PATH``, then measures, in one run:

  write     samples/s over one gRPC WriteDataStream: periodic int16 in bursts
            of 10,000 and of 100 samples, timestamped f64 in bursts of 10,000;
            from the first message to the ``flush_completed`` answering the
            final flush marker (so the figure includes fsync and indexing)
  ceiling   the 100-sample bursts again, to a server whose handler drops each
            message (``bench._grpc_sink``, the server's gRPC options, same client): what
            gRPC's Python server and client allow one stream without a store
  fast      REST read samples/s of everything the 10,000-burst run wrote
            (stored chunk bytes streamed as they are)
  decoding  REST read samples/s of the same data through a session whose data
            binding shifts it by a time offset (chunks decoded, shifted and
            re-encoded)
  size      stored bytes per sample (index ``packed_length`` / samples) of the
            int16 signal, plus the LZ4 options (fast, high-compression levels)
            and other step sizes measured offline on the same chunk layout
  s3        the writes and reads again with ``RTA_STORE=s3`` against moto's S3
            server on loopback (a fresh bucket), with the ratio to the file
            store of the same run and the object-store requests per GB written
            and read (``rta_store_object_requests_total`` from the server's
            /metrics), for a cloud bill's estimate. moto is a Python server:
            these figures are a floor for a real S3 or MinIO (skip: --no-s3).
            Which side limits a read: the server's CPU capacity (samples per
            CPU-second of the server process during the read, from /proc, and
            moto's CPU seconds beside it) against moto alone serving the same
            ranged GETs the server plans (``ObjectReads.planned_ranges``) to
            plain boto3 calls, as many at once as the server's read-ahead

The signal is what telemetry looks like: a random walk whose steps are drawn
uniformly from -2..+2 LSB (a sensor quantised a little finer than its noise;
its spread over a 20 s chunk is a few hundred LSB), sampled at 1 kHz on 8
channels. Timestamped data is a float random walk at ~1 kHz with jittered
microsecond deltas.

The baseline is what a user would otherwise pick: a plain PostgreSQL table of
(channel, time, value) rows with a primary key on (channel, time), written
with one binary COPY per burst in one transaction (the same bursts: same
channels, times and values) and read with one SELECT per request (the time
shift done by SQL for the decoding case). Ratios are ours / baseline (for
size: baseline / ours).

Targets: write >= 30 M samples/s (10,000-sample bursts), fast read >= 500 M
samples/s, decoding read >= 50 M samples/s, <= 1.5 bytes per sample, every
figure >= 20x the baseline. Server CPU seconds are read from /proc for the
server process, so figures per server CPU second are given too (the machine
is shared; wall-clock rates are the headline).

Usage: python -m bench data [--seconds S] [--baseline-seconds S] [--repeat N] [--channels N]
                            [--keep-data] [--no-s3]
"""

import argparse
import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from array import array
from datetime import UTC, datetime

from bench import common

NAME = "data"
PREFIX = "bench-data-"
SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND  # a multiple of every chunk span
INTERVAL = SECOND // 1000  # 1 kHz
SHIFT = 3600 * SECOND  # the decoding read's data binding offset
WALK_STEPS = 2  # steps uniform in -2..+2 LSB
TARGETS = {"write": 30e6, "fast": 500e6, "decoding": 50e6, "bytes_per_sample": 1.5, "ratio": 20.0}
WRITE = "/rta.toolkit.api.chunk_service.DataWriter/WriteDataStream"

# (key, label, kind, burst samples, identity)
WORKLOADS = [
    ("periodic_10k", "periodic int16, 10,000-sample bursts", "periodic", 10_000, PREFIX + "p10k"),
    ("periodic_100", "periodic int16, 100-sample bursts", "periodic", 100, PREFIX + "p100"),
    ("timestamped_10k", "timestamped f64, 10,000-sample bursts", "timestamped", 10_000, PREFIX + "t10k"),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench data", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds each gRPC write run sends for")
    parser.add_argument("--baseline-seconds", type=float, default=3.0, help="seconds each PostgreSQL write runs for")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions of each read (best is reported)")
    parser.add_argument("--channels", type=int, default=8, help="channels written round robin")
    parser.add_argument("--keep-data", action="store_true", help="keep the server's data directory (path printed)")
    parser.add_argument("--no-s3", action="store_true", help="skip the object-store (RTA_STORE=s3, moto) runs")
    args, _unknown = parser.parse_known_args(argv)
    return args


# --- signals -----------------------------------------------------------------------------------


def random_walk_int16(n, seed, max_step=WALK_STEPS):
    """``n`` int16 samples of a random walk with steps uniform in -max_step..+max_step (folded into range)."""
    rng = random.Random(seed)
    steps = rng.choices(range(-max_step, max_step + 1), k=n)
    walk = itertools.accumulate(steps, initial=rng.randrange(-1000, 1000))
    # Fold (reflect) into the int16 range so a long walk keeps its small steps.
    return array("h", (v if -32768 <= v <= 32767 else _fold(v) for v in itertools.islice(walk, 1, None)))


def _fold(v):
    period = 2 * 65535
    x = (v + 32768) % period
    return (x if x <= 65535 else period - x) - 32768


def random_walk_f64(n, seed):
    rng = random.Random(seed)
    return array("d", itertools.accumulate(rng.gauss(0.0, 0.05) for _ in range(n)))


def jittered_deltas(n, seed):
    """Microsecond deltas around 1,000 (990..1,010): an irregular ~1 kHz channel."""
    rng = random.Random(seed)
    return [rng.randint(990, 1010) for _ in range(n)]


class Load:
    """The bursts of one workload, generated on the fly from precomputed signals.

    Burst ``n`` goes to channel ``n % channels``; each channel's bursts are
    contiguous in time and in signal. ``baseline_rows`` gives the same samples
    as (channel, time, value) rows.
    """

    def __init__(self, kind, burst, channels, int16_signal, f64_signal, deltas):
        self.kind, self.burst, self.channels = kind, burst, channels
        self.signal = int16_signal if kind == "periodic" else f64_signal
        self.width = 2 if kind == "periodic" else 8
        self.raw = self.signal.tobytes()
        self.burst_deltas = [0] + deltas[1:burst]
        # Each burst starts 1 ms after the previous one's last sample (deltas are in microseconds).
        self.burst_step = (sum(self.burst_deltas) + 1000) * 1000
        self.count = len(self.signal)
        self._deltas_field = None

    def _slice(self, channel, index):
        """(sample offset in the signal, continuous per channel; wraps around)."""
        n = self.burst
        per_channel = self.count // self.channels
        start = (channel * per_channel + index * n) % max(1, self.count - n)
        return start

    def message(self, n, pb, data_pb2):
        """The serialized WriteDataStreamMessage of burst ``n``."""
        channel, index = n % self.channels, n // self.channels
        first = self._slice(channel, index)
        buffer = self.raw[first * self.width : (first + self.burst) * self.width]
        if self.kind == "periodic":
            item = data_pb2.PeriodicData(
                channel_id=0x100 + channel,
                start_timestamp=T0 + index * self.burst * INTERVAL,
                interval=INTERVAL,
                samples=self.burst,
                buffer=buffer,
            )
            return pb.WriteDataStreamMessage(periodic_data=item).SerializeToString()
        # The deltas are the same every burst: their field is serialized once and appended (protobuf
        # accepts fields in any order), so the client spends its time sending, not encoding.
        from rta_kit.varints import encode_varint

        if self._deltas_field is None:
            self._deltas_field = data_pb2.TimestampedData(timestamp_deltas=self._deltas(0)).SerializeToString()
            self._field_tag = pb.WriteDataStreamMessage.DESCRIPTOR.fields_by_name["timestamped_data"].number << 3 | 2
        item = data_pb2.TimestampedData(
            channel_id=0x100 + channel,
            start_timestamp=self._ts_start(index),
            timestamp_deltas_scale=1000,
            buffer=buffer,
        ).SerializeToString()
        item += self._deltas_field
        return bytes((self._field_tag,)) + encode_varint(len(item)) + item

    def _deltas(self, index):
        return self.burst_deltas  # the same jitter pattern every burst

    def _ts_start(self, index):
        return T0 + index * self.burst_step

    def baseline_rows(self, n):
        """Rows (channel, time, value) of burst ``n``."""
        channel, index = n % self.channels, n // self.channels
        first = self._slice(channel, index)
        values = self.signal[first : first + self.burst]
        ch = 0x100 + channel
        if self.kind == "periodic":
            start = T0 + index * self.burst * INTERVAL
            times = range(start, start + self.burst * INTERVAL, INTERVAL)
        else:
            times = itertools.accumulate((d * 1000 for d in self._deltas(index)), initial=self._ts_start(index))
            times = itertools.islice(times, 1, None)
        return zip(itertools.repeat(ch), times, values)


# --- the server --------------------------------------------------------------------------------


def serve(database_url, data_path, timeout=60, store_env=None):
    """``manage.py serve`` (daphne + gRPC) on free local ports; yields (http_port, grpc_port, pid)."""
    return common.http_server(
        database_url,
        timeout=timeout,
        grpc=True,
        log_name="data-server.log",
        extra_env={"RTA_DATA_PATH": str(data_path), **(store_env or {})},
    )


# --- the object store (RTA_STORE=s3 on moto's S3 server) -----------------------------------------

MOTO = {}  # "pid": moto's server process while moto_store() runs (its CPU seconds are read from /proc)
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_store():
    """moto's S3 server on a free loopback port with a fresh bucket; yields the server's RTA_STORE=s3 environment."""
    import subprocess
    import urllib.request

    import boto3

    port = common.free_port()
    os.environ.update(S3_CREDENTIALS)  # this process reads the bucket too (sizes, the in-process reader)
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(common.RESULTS_DIR / "moto.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **S3_CREDENTIALS},
        )
    MOTO["pid"] = proc.pid
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start; see bench/results/moto.log") from None
                time.sleep(0.2)
        client = boto3.session.Session(**{k.lower(): v for k, v in S3_CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"})
        client.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="rta-bench")
        yield {
            "RTA_STORE": "s3",
            "RTA_S3_BUCKET": "rta-bench",
            "RTA_S3_PREFIX": "bench/",
            "RTA_S3_ENDPOINT_URL": url,
            **S3_CREDENTIALS,
        }
    finally:
        MOTO.pop("pid", None)
        common.stop_process(proc)


def object_requests(http_port):
    """``{op: count}`` of the server's object-store requests so far (its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("rta_store_object_requests_total{"):
            labels, _, value = line.rpartition(" ")
            out[labels.split('op="')[1].split('"')[0]] = float(value)
    return out


def _requests_delta(before, after):
    return {op: int(after[op] - before.get(op, 0)) for op in after if after[op] - before.get(op, 0)}


def object_store_ceiling(identity, store_env, repeat, threads=8):
    """What the S3 server itself delivers: whole-object GETs of the identity's objects, ``threads`` at once,
    straight from boto3 (no index, no framing); best (bytes, seconds) of ``repeat``."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    from data_app.store.objects import chunks, locks

    client = boto3.session.Session().client(
        "s3", endpoint_url=store_env["RTA_S3_ENDPOINT_URL"], region_name="us-east-1"
    )
    bucket = store_env["RTA_S3_BUCKET"]
    prefix = store_env["RTA_S3_PREFIX"] + chunks.identity_folder(locks.digest(identity))
    keys = [
        e["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for e in page.get("Contents", ())
    ]
    best = None
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat + 1):
            began = time.perf_counter()
            size = sum(pool.map(lambda k: len(client.get_object(Bucket=bucket, Key=k)["Body"].read()), keys))
            elapsed = time.perf_counter() - began
            best = (size, elapsed) if best is None or elapsed < best[1] else best
    return best


def object_store_ranged_ceiling(identity, store_env, repeat, threads=None):
    """What the S3 server delivers for the server's own request pattern: the ranged GETs ``ObjectReads``
    plans for the fast-path read of ``identity``, ``threads`` at once (the server's read-ahead),
    with plain boto3 ``get_object`` calls and nothing of RTA in the path; best of ``repeat``.

    Returns bytes, requests, best seconds, and the CPU seconds of the S3 server (moto) and of this
    client process during the best run."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from django.test import override_settings

    from data_app.store import reader
    from data_app.store.objects import chunks

    with override_settings(**_store_settings(None, store_env)):
        plan = chunks.ObjectReads(reader.find_chunks(identity, "periodic"), store=object()).planned_ranges
    client = boto3.session.Session().client(
        "s3", endpoint_url=store_env["RTA_S3_ENDPOINT_URL"], region_name="us-east-1"
    )
    bucket, prefix = store_env["RTA_S3_BUCKET"], store_env["RTA_S3_PREFIX"]

    def get(where):
        name, start, end = where
        answer = client.get_object(Bucket=bucket, Key=prefix + name, Range=f"bytes={start}-{end - 1}")
        return len(answer["Body"].read())

    best = None
    with ThreadPoolExecutor(threads or chunks.AHEAD_REQUESTS) as pool:
        for _ in range(repeat + 1):
            moto_before, own_before = common.cpu_seconds(MOTO["pid"]), time.process_time()
            began = time.perf_counter()
            size = sum(pool.map(get, plan))
            elapsed = time.perf_counter() - began
            run = {
                "bytes": size,
                "requests": len(plan),
                "best_seconds": round(elapsed, 4),
                "store_cpu_seconds": round(common.cpu_seconds(MOTO["pid"]) - moto_before, 3),
                "client_cpu_seconds": round(time.process_time() - own_before, 3),
                "threads": threads or chunks.AHEAD_REQUESTS,
            }
            best = run if best is None or elapsed < best["best_seconds"] else best
    best["mb_per_second"] = best["bytes"] / best["best_seconds"] / 1e6
    return best


def _store_settings(data_path, store_env):
    """The settings an in-process reader needs to read what the server stored."""
    if not store_env:
        return {"RTA_DATA_PATH": data_path}
    return {k: v for k, v in store_env.items() if k.startswith("RTA_")}


def stored_object_bytes(identity, store_env):
    """Bytes of the identity's objects in the bucket (what the bill counts), from a listing."""
    import boto3

    from data_app.store.objects import chunks, locks

    client = boto3.session.Session().client(
        "s3", endpoint_url=store_env["RTA_S3_ENDPOINT_URL"], region_name="us-east-1"
    )
    prefix = store_env["RTA_S3_PREFIX"] + chunks.identity_folder(locks.digest(identity))
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=store_env["RTA_S3_BUCKET"], Prefix=prefix):
        total += sum(entry["Size"] for entry in page.get("Contents", ()))
    return total


# --- writes over gRPC --------------------------------------------------------------------------


def grpc_write(grpc_port, identity, load, seconds, pb, data_pb2, server_pid):
    """One WriteDataStream sending bursts for ``seconds``, then a flush marker; returns figures.

    The client is gRPC's asyncio API (about half the CPU per message of the blocking
    one), leaving more of the shared cores to the server being measured.
    """
    import asyncio

    async def run():
        async with common.aio_grpc_channel(f"127.0.0.1:{grpc_port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 20)
            call = channel.stream_stream(
                WRITE, request_serializer=None, response_deserializer=pb.WriteDataStreamResponseMessage.FromString
            )(timeout=seconds + 600)
            cpu_before = common.cpu_seconds(server_pid)
            began = time.perf_counter()
            await call.write(pb.WriteDataStreamMessage(data_identity=identity).SerializeToString())
            deadline, n = began + seconds, 0
            while time.perf_counter() < deadline:
                for _ in range(16):
                    await call.write(load.message(n, pb, data_pb2))  # waits while flow control holds it back
                    n += 1
            await call.write(pb.WriteDataStreamMessage(flush_marker="end").SerializeToString())
            await call.done_writing()
            answers = [r.flush_completed async for r in call]
            elapsed = time.perf_counter() - began
            return n, answers, elapsed, common.cpu_seconds(server_pid) - cpu_before

    bursts, answers, elapsed, cpu = asyncio.run(run())
    if answers != ["end"]:
        raise RuntimeError(f"WriteDataStream answered {answers!r}")
    samples = bursts * load.burst
    return {
        "bursts": bursts,
        "samples": samples,
        "seconds": round(elapsed, 3),
        "samples_per_second": samples / elapsed,
        "server_cpu_seconds": round(cpu, 3),
        "samples_per_server_cpu_second": samples / cpu if cpu else None,
    }


def grpc_ceiling(load, seconds, pb, data_pb2):
    """The same write to a server that only counts messages (``bench._grpc_sink``): gRPC's own ceiling."""
    import subprocess

    from django.conf import settings

    options = [str(settings.RTA_GRPC_MAX_MESSAGE_BYTES), str(settings.RTA_GRPC_STREAM_WINDOW_BYTES)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._grpc_sink", *options], cwd=common.PROJECT_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        return grpc_write(port, "ceiling", load, seconds, pb, data_pb2, proc.pid)
    finally:
        proc.kill()
        proc.wait()


# --- reads over REST ---------------------------------------------------------------------------


_RECEIVE_BUFFER = bytearray(1 << 24)  # grown as needed and kept: its pages are touched once, not per request


def http_get(port, path, timeout=120):
    """GET ``path`` over a fresh connection; returns (body, wall seconds to the last byte).

    A lean client, so the figure is the server's: the response is received with
    ``recv_into`` into one buffer kept between requests (``Connection: close``
    marks the end) and only then parsed (status, headers, chunked transfer
    encoding).
    """
    global _RECEIVE_BUFFER
    buf = _RECEIVE_BUFFER
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        began = time.perf_counter()
        auth = "".join(f"{k}: {v}\r\n" for k, v in common.auth_headers().items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode())
        size = 0
        while True:
            if size == len(buf):
                buf.extend(bytes(len(buf)))
                _RECEIVE_BUFFER = buf
            n = sock.recv_into(memoryview(buf)[size:])
            if not n:
                break
            size += n
        elapsed = time.perf_counter() - began
    raw = memoryview(buf)[:size]
    head_end = bytes(raw[:65536]).find(b"\r\n\r\n")
    if head_end < 0:
        raise RuntimeError(f"GET {path}: no complete response ({size} bytes)")
    head = bytes(raw[:head_end]).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
    body = raw[head_end + 4 :]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    else:
        body = bytes(body)
    if status != 200:
        raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")
    return body, elapsed


def _dechunk(view):
    parts, pos = [], 0
    while True:
        line_end = bytes(view[pos : pos + 32]).find(b"\r\n")
        length = int(bytes(view[pos : pos + line_end]).split(b";")[0], 16)
        pos += line_end + 2
        if length == 0:
            return b"".join(parts)
        parts.append(view[pos : pos + length])
        pos += length + 2


def walk_headers(body):
    """(chunks, first chunk start, payload bytes) of a chunked response, reading only the headers."""
    from rta.model.net import chunks_pb2

    view, pos, chunks, start, first, payload = memoryview(body), 0, 0, 0, None, 0
    header = chunks_pb2.ChunkTransferHeader()
    while pos < len(view):
        (length,) = struct.unpack_from("<i", view, pos)
        header.ParseFromString(view[pos + 4 : pos + 4 + length])
        pos += 4 + length + header.packed_length
        payload += header.packed_length
        start += header.chunk_start_time_delta
        first = start if first is None else first
        chunks += 1
    if pos != len(view):
        raise RuntimeError("response body is not a whole number of chunks")
    return chunks, first, payload


def decoded_samples(body, kind):
    """Samples in a chunked response, by decoding every list (verification, untimed)."""
    from rta_kit import wire

    total = 0
    for chunk in wire.read_chunks(body):
        lst = chunk.decode(kind)
        if kind == "periodic":
            total += sum(i.samples for i in lst.periodic_data)
        else:
            total += sum(len(i.timestamp_deltas) for i in lst.timestamped_data)
    return total


def rest_read(port, identity, kind, channels, repeat, server_pid, store_pid=None):
    """Best of ``repeat`` GETs after a warm-up, with the CPU seconds the server (and the S3 server
    ``store_pid``, if any) spent during the best one."""
    path = f"/rta/v2/sessions/{identity}/data/{kind}/{channels}"
    http_get(port, path)  # warm-up (and file cache)
    runs = []
    for _ in range(repeat):
        cpu_before = common.cpu_seconds(server_pid)
        store_before = common.cpu_seconds(store_pid) if store_pid else 0.0
        body, elapsed = http_get(port, path)
        store_cpu = common.cpu_seconds(store_pid) - store_before if store_pid else None
        runs.append((elapsed, common.cpu_seconds(server_pid) - cpu_before, store_cpu))
    best = min(runs, key=lambda r: r[0])
    out = {
        "path": path,
        "bytes": len(body),
        "seconds": [round(r[0], 4) for r in runs],
        "best_seconds": round(best[0], 4),
        "server_cpu_seconds": round(best[1], 4),
    }
    if store_pid:
        out["store_cpu_seconds"] = round(best[2], 4)
    return body, out


def stored(identity, kind):
    """(chunks, samples, packed bytes, unpacked bytes) in the chunk index for ``identity``."""
    from django.db.models import Count, Sum

    from data_app.models import Chunk

    agg = Chunk.objects.filter(identity=identity, kind=kind).aggregate(
        n=Count("id"), samples=Sum("sample_count"), packed=Sum("packed_length"), unpacked=Sum("unpacked_length")
    )
    return agg["n"] or 0, agg["samples"] or 0, agg["packed"] or 0, agg["unpacked"] or 0


def store_fast_path(identity, kind, data_path, repeat, store_env=None):
    """In-process ``reader.wire_stream`` over the same chunks (no HTTP): bytes and best seconds."""
    from django.test import override_settings

    from data_app.store import reader

    with override_settings(**_store_settings(data_path, store_env)):
        refs = reader.find_chunks(identity, kind)
        best, size = None, 0
        for _ in range(repeat + 1):
            began = time.perf_counter()
            size = sum(len(block) for block in reader.wire_stream(refs))
            elapsed = time.perf_counter() - began
            best = elapsed if best is None else min(best, elapsed)
    return size, best


# --- bytes per sample: LZ4 options and signals -------------------------------------------------


def chunk_payloads(identity, data_path, limit=64):
    """Unpacked payloads of up to ``limit`` stored chunks of ``identity`` (periodic)."""
    from data_app.models import Chunk
    from data_app.store.segments import SegmentReader
    from rta_kit import wire

    rows = list(Chunk.objects.filter(identity=identity, kind="periodic").order_by("channel", "start_time")[:limit])
    out = []
    from django.test import override_settings

    with override_settings(RTA_DATA_PATH=data_path), SegmentReader() as segs:
        for r in rows:
            out.append(
                (
                    wire.unpack(segs.read(r.file, r.offset, r.packed_length), r.unpacked_length, r.compression),
                    r.sample_count,
                )
            )
    return out


COMPRESSION_OPTIONS = [
    ("lz4 fast (default)", {}),
    ("lz4 fast, acceleration 4", {"mode": "fast", "acceleration": 4}),
    ("lz4 HC level 1", {"mode": "high_compression", "compression": 1}),
    ("lz4 HC level 3", {"mode": "high_compression", "compression": 3}),
    ("lz4 HC level 9", {"mode": "high_compression", "compression": 9}),
]


def compression_options(payloads):
    """Bytes per sample and compression speed of each LZ4 block option over the same payloads."""
    import lz4.block

    samples = sum(n for _, n in payloads)
    out = []
    for label, options in COMPRESSION_OPTIONS:
        began = time.perf_counter()
        size = sum(len(lz4.block.compress(p, store_size=False, **options)) for p, _ in payloads)
        elapsed = time.perf_counter() - began
        out.append(
            {"option": label, "bytes_per_sample": size / samples, "compress_samples_per_second": samples / elapsed}
        )
    return out


def signal_sweep(channels_samples=40_000):
    """Bytes per sample (LZ4 fast, the writer's chunk layout) of walks with other step sizes."""
    from rta.model import data_pb2

    from rta_kit import wire

    out = []
    cases = [(f"random walk, steps -{k}..+{k}", k) for k in (1, 2, 4, 16)] + [("uniform noise (worst case)", None)]
    for label, k in cases:
        if k is None:
            rng = random.Random(7)
            values = array("h", (rng.randrange(-32768, 32768) for _ in range(channels_samples)))
        else:
            values = random_walk_int16(channels_samples, seed=11, max_step=k)
        raw = values.tobytes()
        span = 20_000  # samples per chunk at 1 kHz with the writer's 20 s span
        size = 0
        for c in range(0, channels_samples, span):
            lst = data_pb2.PeriodicDataList()
            for i in range(c, min(c + span, channels_samples), 128):
                n = min(128, c + span - i, channels_samples - i)
                lst.periodic_data.add(
                    channel_id=0x100,
                    start_timestamp=T0 + i * INTERVAL,
                    interval=INTERVAL,
                    samples=n,
                    buffer=raw[2 * i : 2 * (i + n)],
                )
            size += len(wire.pack(lst.SerializeToString()))
        out.append({"signal": label, "bytes_per_sample": size / channels_samples})
    return out


# --- the PostgreSQL baseline -------------------------------------------------------------------


def baseline_table(kind):
    return f"bench_data_baseline_{'i16' if kind == 'periodic' else 'f64'}"


def baseline_write(conninfo, load, seconds):
    """Bursts COPYed (binary) into a (channel, time, value) table with a primary key, one transaction."""
    import psycopg

    table = baseline_table(load.kind)
    value_type = "smallint" if load.kind == "periodic" else "double precision"
    with psycopg.connect(**conninfo) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(
            f"CREATE TABLE {table} (channel integer NOT NULL, time bigint NOT NULL, "
            f"value {value_type} NOT NULL, PRIMARY KEY (channel, time))"
        )
        conn.commit()
        types = ["int4", "int8", "int2" if load.kind == "periodic" else "float8"]
        began = time.perf_counter()
        deadline = began + seconds
        n = 0
        with conn.cursor() as cur:
            while time.perf_counter() < deadline:
                with cur.copy(f"COPY {table} (channel, time, value) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for row in load.baseline_rows(n):
                        copy.write_row(row)
                n += 1
        conn.commit()
        elapsed = time.perf_counter() - began
        conn.autocommit = True
        conn.execute(f"VACUUM ANALYZE {table}")
        rows, size = conn.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}").fetchone()
    return {
        "bursts": n,
        "samples": rows,
        "seconds": round(elapsed, 3),
        "samples_per_second": rows / elapsed,
        "bytes_per_sample": size / rows,
        "table_bytes": size,
    }


def baseline_read(conninfo, kind, channels, shift, repeat):
    """SELECT every row of ``channels`` in time order (times shifted by ``shift`` in SQL); best rows/s."""
    import psycopg

    table = baseline_table(kind)
    best = None
    with psycopg.connect(**conninfo) as conn:
        for i in range(repeat + 1):
            began = time.perf_counter()
            with conn.cursor(binary=True) as cur:
                cur.execute(
                    f"SELECT time + %s, value FROM {table} WHERE channel = ANY(%s) ORDER BY channel, time",
                    [shift, channels],
                )
                rows = len(cur.fetchall())
            elapsed = time.perf_counter() - began
            if i:
                best = elapsed if best is None else min(best, elapsed)
    return {"samples": rows, "best_seconds": round(best, 4), "samples_per_second": rows / best}


def drop_baseline(conninfo):
    import psycopg

    with psycopg.connect(**conninfo) as conn:
        for kind in ("periodic", "timestamped"):
            conn.execute(f"DROP TABLE IF EXISTS {baseline_table(kind)}")


# --- bookkeeping ---------------------------------------------------------------------------------


def _delete_bench_data():
    from data_app.models import Chunk
    from sessions_app.models import Session

    Session.objects.filter(identity__startswith=PREFIX).delete()
    Chunk.objects.filter(identity__startswith=PREFIX).delete()


def _m(x):
    return "—" if x is None else f"{x / 1e6:,.1f} M"


def _ratio(ours, base):
    return None if not ours or not base else ours / base


def _rx(r):
    return "—" if r is None else f"{r:,.0f}×"


def main(argv=None):
    args = parse_args(argv)
    # A terminated run still stops its server and removes its data (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url = common.setup_bench_django()
    load_before = common.warn_if_busy("before the run")

    from django.db import connections

    conninfo = common.conninfo(url)
    with common.console.status("generating signals"):
        int16_signal = random_walk_int16(1 << 22, seed=1)
        f64_signal = random_walk_f64(1 << 20, seed=2)
        deltas = jittered_deltas(20_000, seed=3)
    loads = {
        key: Load(kind, burst, args.channels, int16_signal, f64_signal, deltas)
        for key, _label, kind, burst, _identity in WORKLOADS
    }

    _delete_bench_data()
    data_path = tempfile.mkdtemp(prefix="rta-bench-data-")
    results = {}
    try:
        if not args.no_s3:  # first, so the file store's chunks are the ones left for the size figures
            results["s3"] = run_object_store(url, loads, args, data_path)
        create_sessions(args.channels)
        connections.close_all()
        with serve(url, data_path) as (http_port, grpc_port, pid):
            results["write"] = run_writes(grpc_port, pid, loads, args, data_path)
            results["read"] = run_reads(http_port, pid, args, data_path)
        with common.console.status("bytes per sample: LZ4 options and other signals"):
            results["size"] = {
                "options": compression_options(chunk_payloads(WORKLOADS[0][4], data_path)),
                "signals": signal_sweep(),
            }
        results["baseline"] = run_baseline(conninfo, loads, args)
    finally:
        if args.keep_data:
            common.console.print(f"server data kept in {data_path}")
        else:
            shutil.rmtree(data_path, ignore_errors=True)
        _delete_bench_data()
        drop_baseline(conninfo)
        connections.close_all()

    report(results, args, url, load_before)
    return 0


def run_object_store(url, loads, args, data_path):
    """The writes and reads on RTA_STORE=s3 (moto's server, a fresh bucket); the index is emptied after."""
    from django.db import connections

    create_sessions(args.channels)
    connections.close_all()
    try:
        with moto_store() as store_env, serve(url, data_path, store_env=store_env) as (http_port, grpc_port, pid):
            out = {
                "write": run_writes(grpc_port, pid, loads, args, data_path, store_env, http_port),
                "read": run_reads(http_port, pid, args, data_path, store_env),
            }
            out["read"]["fast_compacted"] = read_after_compaction(http_port, pid, args, data_path, store_env)
            return out
    finally:
        _delete_bench_data()
        connections.close_all()


def read_after_compaction(http_port, pid, args, data_path, store_env):
    """``compact_chunks`` (consolidating the flush objects channel by channel), then the fast-path read again."""
    from django.test import override_settings

    from data_app.store import compaction

    p10k = WORKLOADS[0][4]
    channels_expr = f"{0x100:X}-{0x100 + args.channels - 1:X}"
    with (
        common.console.status("compact_chunks on the object store"),
        override_settings(**_store_settings(data_path, store_env)),
    ):
        began = time.perf_counter()
        summary = compaction.compact(grace_seconds=0)
        seconds = time.perf_counter() - began
    _, samples, packed, _ = stored(p10k, "periodic")
    before = object_requests(http_port)
    with common.console.status("REST read, fast path, after compaction"):
        _body, fast = rest_read(http_port, p10k, "periodic", channels_expr, args.repeat, pid, MOTO.get("pid"))
    requests = _requests_delta(before, object_requests(http_port))
    fast.update(
        samples=samples,
        samples_per_second=samples / fast["best_seconds"],
        object_requests=requests,
        requests_per_gb=sum(requests.values()) / ((args.repeat + 1) * packed / 1e9),
        compaction={"seconds": round(seconds, 2), "objects_written": summary.compacted, "removed": summary.removed},
    )
    with common.console.status("the S3 server alone: the same ranged GETs, boto3, no RTA"):
        fast["store_ceiling_ranged"] = _with_samples(
            object_store_ranged_ceiling(p10k, store_env, args.repeat), samples, packed
        )
    common.console.print(
        f"read fast path after compaction: {_m(fast['samples_per_second'])} samples/s, "
        f"{fast['requests_per_gb']:,.0f} requests/GB (compaction {seconds:.1f} s)"
    )
    return fast


def create_sessions(channels):
    """A closed session per workload, and one reading the 10,000-burst data shifted by ``SHIFT``."""
    from sessions_app.services.updates import create_or_update_session

    for _key, _label, _kind, _burst, identity in WORKLOADS:
        create_or_update_session(identity, [("set_state", 4)])
    create_or_update_session(
        PREFIX + "shifted",
        [
            ("set_state", 4),
            (
                "set_data_bindings",
                [
                    {
                        "identity": WORKLOADS[0][4],
                        "session_time_offset": SHIFT,
                        "channel_bindings": [
                            {
                                "first_data_channel": 0x100,
                                "first_session_channel": 0x100,
                                "last_session_channel": 0x100 + channels - 1,
                            }
                        ],
                    }
                ],
            ),
        ],
    )


def run_writes(grpc_port, pid, loads, args, data_path, store_env=None, http_port=None):
    from rta.model import data_pb2
    from rta.toolkit.api import chunk_service_pb2 as pb

    from data_app.store import segments

    out = {}
    where = "s3 (moto)" if store_env else "file"
    for key, label, kind, _burst, identity in WORKLOADS:
        before = object_requests(http_port) if store_env else None
        with common.console.status(f"gRPC write to the {where} store: {label} ({args.seconds:g} s)"):
            r = grpc_write(grpc_port, identity, loads[key], args.seconds, pb, data_pb2, pid)
        chunks, samples, packed, unpacked = stored(identity, kind)
        if samples != r["samples"]:
            raise RuntimeError(f"{label}: wrote {r['samples']} samples, index holds {samples}")
        if store_env:
            held = stored_object_bytes(identity, store_env)
            requests = _requests_delta(before, object_requests(http_port))
            r.update(object_requests=requests, requests_per_gb=sum(requests.values()) / (held / 1e9))
        else:
            held = os.path.getsize(os.path.join(data_path, "chunks", segments.segment_name(identity)))
        r.update(
            chunks=chunks,
            stored_bytes=packed,
            bytes_per_sample=packed / samples,
            unpacked_bytes_per_sample=unpacked / samples,
            segment_bytes_per_sample=held / samples,
        )
        out[key] = r
        common.console.print(
            f"write {label} ({where}): {_m(r['samples_per_second'])} samples/s, "
            f"{r['bytes_per_sample']:.3f} B/sample, {chunks} chunks"
            + (f", {r['requests_per_gb']:,.0f} requests/GB" if store_env else "")
        )
    if store_env:
        return out
    with common.console.status(f"gRPC alone: 100-sample bursts to a handler that drops them ({args.seconds:g} s)"):
        out["ceiling_100"] = grpc_ceiling(loads["periodic_100"], args.seconds, pb, data_pb2)
    common.console.print(
        f"gRPC alone, 100-sample bursts dropped on arrival: {_m(out['ceiling_100']['samples_per_second'])} samples/s"
    )
    return out


def run_reads(http_port, pid, args, data_path, store_env=None):
    p10k, shifted = WORKLOADS[0][4], PREFIX + "shifted"
    channels_expr = f"{0x100:X}-{0x100 + args.channels - 1:X}"
    out = {}
    n_chunks, samples, packed, _ = stored(p10k, "periodic")
    before = object_requests(http_port) if store_env else None
    with common.console.status("REST read, fast path"):
        body, fast = rest_read(http_port, p10k, "periodic", channels_expr, args.repeat, pid, MOTO.get("pid"))
    if store_env:  # warm-up + repeats, each the whole data set
        requests = _requests_delta(before, object_requests(http_port))
        fast.update(
            object_requests=requests, requests_per_gb=sum(requests.values()) / ((args.repeat + 1) * packed / 1e9)
        )
    served, first_start, payload = walk_headers(body)
    if served != n_chunks or payload != packed:
        raise RuntimeError(f"fast path served {served} chunks / {payload} bytes, index has {n_chunks} / {packed}")
    one_body, _ = http_get(http_port, f"/rta/v2/sessions/{p10k}/data/periodic/{0x100:X}")
    if decoded_samples(one_body, "periodic") != stored_channel(p10k, 0x100):
        raise RuntimeError("fast path: decoded samples of one channel differ from the index")
    fast.update(samples=samples, samples_per_second=samples / fast["best_seconds"])
    out["fast"] = fast
    common.console.print(
        f"read fast path: {_m(fast['samples_per_second'])} samples/s "
        f"({fast['bytes'] / fast['best_seconds'] / 1e6:,.0f} MB/s)"
    )

    with common.console.status("REST read, decoding path (data binding with a time offset)"):
        try:
            body, decoding = rest_read(http_port, shifted, "periodic", channels_expr, args.repeat, pid, MOTO.get("pid"))
            d_chunks, d_first, _ = walk_headers(body)
        except (OSError, RuntimeError, ValueError, struct.error) as exc:
            decoding, d_chunks, d_first = {"error": repr(exc)[:300]}, 0, None
    if d_chunks == n_chunks and d_first == first_start + SHIFT:
        decoding.update(samples=samples, samples_per_second=samples / decoding["best_seconds"], available=True)
        common.console.print(f"read decoding path: {_m(decoding['samples_per_second'])} samples/s")
    else:
        decoding.update(
            samples=0,
            samples_per_second=None,
            available=False,
            note="the server does not serve data bindings with a time offset (yet): "
            f"{d_chunks} chunks returned; {decoding.get('error', 'no error')}",
        )
        common.console.print(
            "[yellow]decoding path: data bindings with a time offset are not served; no figure[/yellow]"
        )
    out["decoding"] = decoding

    size, seconds = store_fast_path(p10k, "periodic", data_path, args.repeat, store_env)
    if store_env:
        raw, raw_seconds = object_store_ceiling(p10k, store_env, args.repeat)
        out["store_ceiling"] = {
            "bytes": raw,
            "best_seconds": round(raw_seconds, 4),
            "mb_per_second": raw / raw_seconds / 1e6,
            "samples_per_second": samples * (raw / packed) / raw_seconds,  # the same bytes as samples
        }
        with common.console.status("the S3 server alone: the same ranged GETs, boto3, no RTA"):
            out["store_ceiling_ranged"] = _with_samples(
                object_store_ranged_ceiling(p10k, store_env, args.repeat), samples, packed
            )
    out["store_only"] = {"bytes": size, "best_seconds": round(seconds, 4), "samples_per_second": samples / seconds}
    return out


def _with_samples(ceiling, samples, packed):
    """A store ceiling with its bytes as samples of the data set (``samples`` in ``packed`` bytes)."""
    return {**ceiling, "samples_per_second": samples * (ceiling["bytes"] / packed) / ceiling["best_seconds"]}


def run_baseline(conninfo, loads, args):
    out = {}
    data_channels = list(range(0x100, 0x100 + args.channels))
    for key, label, kind, _burst, _identity in WORKLOADS:
        with common.console.status(f"PostgreSQL baseline write: {label} ({args.baseline_seconds:g} s)"):
            b = baseline_write(conninfo, loads[key], args.baseline_seconds)
        if key == "periodic_10k":
            with common.console.status(f"PostgreSQL baseline reads: {label}"):
                b["read"] = baseline_read(conninfo, kind, data_channels, 0, args.repeat)
                b["read_shifted"] = baseline_read(conninfo, kind, data_channels, SHIFT, args.repeat)
        out[key] = b
        common.console.print(
            f"baseline write {label}: {_m(b['samples_per_second'])} samples/s, {b['bytes_per_sample']:.1f} B/sample"
        )
    return out


def stored_channel(identity, channel):
    from django.db.models import Sum

    from data_app.models import Chunk

    return (
        Chunk.objects.filter(identity=identity, kind="periodic", channel=channel).aggregate(s=Sum("sample_count"))["s"]
        or 0
    )


def report(results, args, url, load_before):
    w, r, b = results["write"], results["read"], results["baseline"]
    ceiling = w["ceiling_100"]
    base10k = b["periodic_10k"]
    rows, figures = [], {}

    def add(key, label, ours, base, target, unit="samples/s", lower_is_better=False, per_cpu=None):
        ratio = _ratio(base, ours) if lower_is_better else _ratio(ours, base)
        # Rows without a target of their own still have to beat the baseline 20 times over.
        met = None
        if ours is not None:
            met = (ratio or 0) >= TARGETS["ratio"]
            if target is not None:
                met = met and ((ours <= target) if lower_is_better else (ours >= target))
        figures[key] = {
            "value": ours,
            "per_server_cpu_second": per_cpu,
            "baseline": base,
            "ratio": ratio,
            "target": target,
            "meets_target": met,
        }
        if unit == "samples/s":
            cells = [_m(ours), _m(per_cpu), _m(base), _rx(ratio), "≥ 20×" if target is None else f"≥ {_m(target)}"]
        else:
            cells = ["—" if ours is None else f"{ours:.3f}", "", f"{base:.1f}", _rx(ratio), f"≤ {target}"]
        ok = "[yellow]n/a[/yellow]" if met is None else ("yes" if met else "[red]NO[/red]")
        rows.append([label, *cells, ok])

    def cpu_rate(run):
        cpu = run.get("server_cpu_seconds")
        return run["samples"] / cpu if cpu and run.get("samples") else None

    add(
        "write_periodic_10k",
        "write, periodic int16, 10,000-sample bursts",
        w["periodic_10k"]["samples_per_second"],
        base10k["samples_per_second"],
        TARGETS["write"],
        per_cpu=cpu_rate(w["periodic_10k"]),
    )
    add(
        "write_periodic_100",
        "write, periodic int16, 100-sample bursts",
        w["periodic_100"]["samples_per_second"],
        b["periodic_100"]["samples_per_second"],
        None,
        per_cpu=cpu_rate(w["periodic_100"]),
    )
    add(
        "write_timestamped_10k",
        "write, timestamped f64, 10,000-sample bursts",
        w["timestamped_10k"]["samples_per_second"],
        b["timestamped_10k"]["samples_per_second"],
        None,
        per_cpu=cpu_rate(w["timestamped_10k"]),
    )
    add(
        "read_fast",
        "REST read, fast path",
        r["fast"]["samples_per_second"],
        base10k["read"]["samples_per_second"],
        TARGETS["fast"],
        per_cpu=cpu_rate(r["fast"]),
    )
    add(
        "read_decoding",
        "REST read, decoding path (time offset)",
        r["decoding"]["samples_per_second"],
        base10k["read_shifted"]["samples_per_second"],
        TARGETS["decoding"],
        per_cpu=cpu_rate(r["decoding"]),
    )
    add(
        "bytes_per_sample",
        "bytes per sample, int16 random walk",
        w["periodic_10k"]["bytes_per_sample"],
        base10k["bytes_per_sample"],
        TARGETS["bytes_per_sample"],
        unit="B",
        lower_is_better=True,
    )
    load_after = common.machine_load()
    common.print_table(
        f"Data Service vs a plain PostgreSQL table ({args.channels} channels at 1 kHz, "
        f"writes {args.seconds:g} s each, reads best of {args.repeat})",
        ["figure", "RTA server", "per server CPU s", "PostgreSQL", "ratio", "target", "met"],
        rows,
        caption=f"Load average {load_before['load_1min']} before, {load_after['load_1min']} after, on "
        f"{load_after['cpus']} CPUs (shared machine: wall-clock figures are pessimistic; 'per server CPU s' "
        "divides by the CPU time the server process used, all threads). In-process reader.wire_stream (no HTTP): "
        f"{_m(r['store_only']['samples_per_second'])} samples/s. gRPC's Python server alone (a handler that drops "
        f"each message, same client) takes 100-sample bursts at {_m(ceiling['samples_per_second'])} samples/s "
        f"({ceiling['bursts'] / ceiling['seconds']:,.0f} messages/s): "
        f"{_rx(_ratio(ceiling['samples_per_second'], b['periodic_100']['samples_per_second']))} the baseline.",
    )
    if "s3" in results:
        figures["s3"] = report_object_store(results["s3"], w, r)
    common.print_table(
        "Bytes per sample of the same chunks under each LZ4 block option (compression speed: one thread)",
        ["option", "bytes/sample", "compress samples/s"],
        [
            [o["option"], f"{o['bytes_per_sample']:.3f}", _m(o["compress_samples_per_second"])]
            for o in results["size"]["options"]
        ],
    )
    common.print_table(
        "Bytes per sample by signal (LZ4 fast, 128-sample items, 20 s chunks at 1 kHz)",
        ["signal", "bytes/sample"],
        [[s["signal"], f"{s['bytes_per_sample']:.3f}"] for s in results["size"]["signals"]],
    )
    data = {
        "benchmark": NAME,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": common.redact(url),
        "environment": {**common.environment(), "load_before": load_before, "load_after": load_after},
        "method": {
            "server": "manage.py serve (daphne + gRPC) on 127.0.0.1, temporary RTA_DATA_PATH, bench database",
            "signal": f"int16 random walk, steps uniform in -{WALK_STEPS}..+{WALK_STEPS}, 1 kHz, "
            f"{args.channels} channels round robin; timestamped: f64 Gaussian random walk, "
            "deltas 990..1010 us",
            "write": "one WriteDataStream per workload (grpc.aio client in the bench process), sending for "
            "--seconds then a flush marker; timed to the flush_completed",
            "reads": "GET of every channel and the whole time range, best of --repeat after one warm-up",
            "baseline": "PostgreSQL table (channel int, time bigint, value) with PRIMARY KEY (channel, time); "
            "one binary COPY per burst in one transaction; reads: one SELECT ... ORDER BY channel, "
            "time fetched in binary (time + offset for the decoding case); size: "
            "pg_total_relation_size / rows",
            "seconds": args.seconds,
            "baseline_seconds": args.baseline_seconds,
            "repeat": args.repeat,
        },
        "targets": TARGETS,
        "figures": figures,
        "results": results,
    }
    path = common.write_results(NAME, data)
    common.console.print(f"results written to {path.relative_to(common.PROJECT_DIR)}")


# The toolkit's published per-thread figures on S3 (spec §16): write 15-30 M, decoding read 90-110 M,
# fast-path read 270-300 M samples/s; the targets are their upper ends.
S3_TARGETS = {"write": 30e6, "decoding": 110e6, "fast": 300e6}


def _bottleneck(capacity, alone):
    """Which side limits a read: the one with the lower rate (within 20 %: both)."""
    if not capacity or not alone:
        return None
    if 0.8 < capacity / alone < 1.25:
        return "both (within 20 %)"
    return "the S3 server (moto)" if alone < capacity else "the RTA server's CPU"


def report_object_store(s3, w, r):
    """The s3 figures beside the file store's of the same run, and requests per GB."""
    rows, out = [], {}
    pairs = [
        (
            "write_periodic_10k",
            "write, periodic int16, 10,000-sample bursts",
            s3["write"]["periodic_10k"],
            w["periodic_10k"],
            S3_TARGETS["write"],
        ),
        (
            "write_periodic_100",
            "write, periodic int16, 100-sample bursts",
            s3["write"]["periodic_100"],
            w["periodic_100"],
            None,
        ),
        (
            "write_timestamped_10k",
            "write, timestamped f64, 10,000-sample bursts",
            s3["write"]["timestamped_10k"],
            w["timestamped_10k"],
            None,
        ),
        ("read_fast", "REST read, fast path", s3["read"]["fast"], r["fast"], S3_TARGETS["fast"]),
        (
            "read_fast_compacted",
            "REST read, fast path, after compact_chunks",
            s3["read"]["fast_compacted"],
            r["fast"],
            S3_TARGETS["fast"],
        ),
        (
            "read_decoding",
            "REST read, decoding path (time offset)",
            s3["read"]["decoding"],
            r["decoding"],
            S3_TARGETS["decoding"],
        ),
    ]
    ceilings = {
        "read_fast": s3["read"].get("store_ceiling_ranged"),
        "read_decoding": s3["read"].get("store_ceiling_ranged"),  # the same chunks, the same ranged GETs
        "read_fast_compacted": s3["read"]["fast_compacted"].get("store_ceiling_ranged"),
    }
    for key, label, ours, file_run, target in pairs:
        value, file_value = ours.get("samples_per_second"), file_run.get("samples_per_second")
        per_gb = ours.get("requests_per_gb")
        met = None if value is None or target is None else value >= target
        cpu = ours.get("server_cpu_seconds")
        capacity = ours["samples"] / cpu if cpu and ours.get("samples") else None
        ceiling = ceilings.get(key)
        alone = ceiling["samples_per_second"] if ceiling else None
        out[key] = {
            "value": value,
            "file_store": file_value,
            "ratio_to_file": _ratio(value, file_value),
            "target": target,
            "meets_target": met,
            "requests_per_gb": per_gb,
            "requests": ours.get("object_requests"),
            "server_cpu_capacity": capacity,
            "server_cpu_seconds": cpu,
            "store_cpu_seconds": ours.get("store_cpu_seconds"),
            "store_alone_samples_per_second": alone,
            "bottleneck": _bottleneck(capacity, alone) if key.startswith("read") else None,
        }
        ratio = _ratio(value, file_value)
        rows.append(
            [
                label,
                _m(value),
                _m(file_value),
                "—" if ratio is None else f"{ratio:.2f}×",
                "—" if target is None else f"≥ {_m(target)}",
                "—" if per_gb is None else f"{per_gb:,.0f}",
                _m(capacity),
                _m(alone),
                "[yellow]n/a[/yellow]" if met is None else ("yes" if met else "[red]NO[/red]"),
            ]
        )
    lines = []
    for key in ("read_fast", "read_fast_compacted", "read_decoding"):
        o, ceiling = out[key], ceilings[key]
        if o["value"] is None or ceiling is None:
            continue
        lines.append(
            f"{key.replace('_', ' ')}: server CPU capacity {_m(o['server_cpu_capacity'])} samples per CPU-second "
            f"({o['server_cpu_seconds']} CPU-s in the server, {o['store_cpu_seconds']} in moto for the read); "
            f"moto alone, the same {ceiling['requests']} ranged GETs {ceiling['threads']} at once: "
            f"{ceiling['mb_per_second']:,.0f} MB/s = {_m(ceiling['samples_per_second'])} samples/s "
            f"({ceiling['store_cpu_seconds']} CPU-s in moto); bottleneck: {o['bottleneck']}."
        )
    common.print_table(
        "Object store (RTA_STORE=s3, moto's S3 server on loopback) vs the file store, same run",
        [
            "figure",
            "s3",
            "file",
            "s3 / file",
            "target (toolkit on S3)",
            "requests/GB",
            "server CPU capacity",
            "S3 server alone",
            "met",
        ],
        rows,
        caption="requests/GB: object-store requests the server made per GB of chunk bytes written (PUT, "
        "multipart) or served (ranged GET). server CPU capacity: samples per CPU-second of the RTA server process "
        "(all threads, /proc) during the run, i.e. what one core of it would serve with an instant S3. S3 server "
        "alone: the same ranged GETs from boto3 with nothing of RTA in the path, as samples/s. "
        + " ".join(lines)
        + f" Whole-object GETs (8 at once, boto3 alone): {s3['read']['store_ceiling']['mb_per_second']:,.0f} MB/s = "
        f"{_m(s3['read']['store_ceiling']['samples_per_second'])} samples/s; the in-process reader (no HTTP): "
        f"{_m(s3['read']['store_only']['samples_per_second'])} samples/s. moto is one Python process on a "
        "shared machine: a real S3 or MinIO is faster.",
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
