"""Durability: a real ``manage.py rungrpc`` killed with SIGKILL loses nothing it acknowledged.

The server runs as a subprocess against the test database (committed rows: a
transactional test) with its own RTA_DATA_PATH. Data is written through
DataWriter in batches, each acknowledged by ``flush_completed``; then more is
sent and a flush requested without waiting, and the server is killed. After a
restart every acknowledged sample is served (DataReader from the restarted
server, REST in this process), late data merges into chunks written before the
crash, and all of it is served again.
"""

import os
import queue
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from django.conf import settings
from django.db import connection
from rta.model import data_pb2
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.models import Chunk
from rta_kit import wire
from sessions_app.services.updates import create_or_update_session

S = 1_000_000_000
T0 = 1_700_000_000 * S
MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"

pytestmark = pytest.mark.django_db(transaction=True)


def _database_url():
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Server:
    """``manage.py rungrpc`` on a free port, against the test database and this test's data path; ``env``:
    settings over these (another store, Redis, a role)."""

    def __init__(self, **env):
        env = {
            **os.environ,
            "RTA_DATABASE_URL": _database_url(),
            "RTA_DATA_PATH": str(settings.RTA_DATA_PATH),
            "RTA_LOG_LEVEL": "WARNING",
            "RTA_GRPC_PROCESSES": "1",
            "RTA_REDIS_URL": "",
            # Only flush markers flush: an unacknowledged batch really is only in memory at the kill.
            "RTA_DATA_FLUSH_AGE": "0",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(MANAGE_PY), "rungrpc", "--bind", "127.0.0.1", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port = self._wait_for_port(timeout=60)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=30)

    def _wait_for_port(self, timeout):
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                line = self.proc.stdout.readline()
                seen.append(line)
                if "listening on port" in line:
                    return int(line.split("listening on port")[1].split()[0])
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError("rungrpc did not start: " + "".join(seen))

    def kill(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stdout.close()

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class Writer:
    """One WriteDataStream; ``flush(marker)`` returns once the server acknowledged it."""

    def __init__(self, channel, identity):
        self.requests = queue.Queue()
        self.responses = pb_grpc.DataWriterStub(channel).WriteDataStream(iter(self.requests.get, None), timeout=60)
        self.send(pb.WriteDataStreamMessage(data_identity=identity))

    def send(self, message):
        self.requests.put(message)

    def flush(self, marker):
        self.send(pb.WriteDataStreamMessage(flush_marker=marker))
        assert next(self.responses).flush_completed == marker

    def close(self):
        self.requests.put(None)
        assert list(self.responses) == []


def batch(second, late=False):
    """One second of channel 1 and 2 (int16 at 1 kHz) and an event; ``late``: the back half of an earlier second."""
    messages, samples = [], []
    start = T0 + second * S + (S // 2 if late else 0)
    n = 500 if late else 1000
    for ch in (1, 2):
        values = [(second * 31 + ch * 7 + i) % 20000 for i in range(n)]
        if not late:
            values[n // 2 :] = [0] * (n - n // 2)  # placeholder the late write replaces
        messages.append(
            pb.WriteDataStreamMessage(
                periodic_data=data_pb2.PeriodicData(
                    channel_id=ch,
                    start_timestamp=start,
                    interval=S // 1000,
                    samples=n,
                    buffer=struct.pack(f"<{n}h", *values),
                )
            )
        )
        samples += [(ch, start + i * (S // 1000), v) for i, v in enumerate(values)]
    event = data_pb2.Event(event_definition_id=second, timestamp=start + 1, status_text="late" if late else "on time")
    messages.append(pb.WriteDataStreamMessage(event=event))
    return messages, samples, [(event.timestamp, event.event_definition_id, event.status_text)]


def served_samples(lists):
    out = {}
    for lst in lists:
        for item in lst.periodic_data:
            for i, v in enumerate(struct.unpack(f"<{item.samples}h", item.buffer)):
                out[(item.channel_id, item.start_timestamp + i * item.interval)] = v
    return out


def read_back(channel):
    stub = pb_grpc.DataReaderStub(channel)
    periodic = served_samples(
        stub.ReadPeriodicDataStream(pb.ReadChannelDataStreamRequest(data_identity="dur", channels="1-2"))
    )
    events = {
        (e.timestamp, e.event_definition_id, e.status_text)
        for lst in stub.ReadEventsStream(pb.ReadDataStreamRequest(data_identity="dur"))
        for e in lst.events
    }
    return periodic, events


def check(acknowledged_samples, acknowledged_events, periodic, events):
    missing = [s for s in acknowledged_samples if periodic.get((s[0], s[1])) != s[2]]
    assert not missing, f"{len(missing)} acknowledged samples lost, e.g. {missing[:3]}"
    assert acknowledged_events <= events


def test_acknowledged_data_survives_sigkill(postgres, api):
    create_or_update_session("dur")
    server = Server()
    writer = None
    try:
        writer = Writer(server.channel, "dur")
        acked, acked_events = {}, set()
        for second in range(8):
            messages, samples, events = batch(second)
            for m in messages:
                writer.send(m)
            if second % 2:  # every other batch acknowledged on its own, the rest together with the next
                writer.flush(f"m{second}")
                for sec in (second - 1, second):
                    for ch, t, v in batch(sec)[1]:
                        acked[(ch, t)] = v
                    acked_events |= set(batch(sec)[2])
        # Late data merged into acknowledged chunks, acknowledged too.
        for second in (1, 4):
            messages, samples, events = batch(second, late=True)
            for m in messages:
                writer.send(m)
            acked.update({(ch, t): v for ch, t, v in samples})
            acked_events |= set(events)
        writer.flush("late")
        # More data, a flush asked for but not waited for: then the crash.
        for second in range(8, 40):
            for m in batch(second)[0]:
                writer.send(m)
        writer.send(pb.WriteDataStreamMessage(flush_marker="unacknowledged"))
    finally:
        server.kill()
        if writer is not None:
            writer.requests.put(None)  # ends the request iterator of the dead call
    acknowledged = [(ch, t, v) for (ch, t), v in acked.items()]

    server = Server()
    try:
        check(acknowledged, acked_events, *read_back(server.channel))
        # Every indexed chunk decodes (nothing torn is indexed), through REST as well.
        response = api.get("/rta/v2/sessions/dur/data/periodic/1-2")
        rest = served_samples(c.decode("periodic") for c in wire.read_chunks(b"".join(response.streaming_content)))
        check(acknowledged, set(), rest, set())
        assert Chunk.objects.filter(identity="dur").count() > 0
        # The restarted server merges late data into chunks written before the crash.
        writer = Writer(server.channel, "dur")
        for second in (0, 6):
            messages, samples, events = batch(second, late=True)
            for m in messages:
                writer.send(m)
            acked.update({(ch, t): v for ch, t, v in samples})
            acked_events |= set(events)
        writer.flush("after restart")
        writer.close()
        check([(ch, t, v) for (ch, t), v in acked.items()], acked_events, *read_back(server.channel))
    finally:
        server.stop()
