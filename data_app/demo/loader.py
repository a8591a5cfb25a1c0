"""Loads (and removes) the demo sessions: config, data through ``DataSink``, sessions through the service layer.

Each demo session has a fixed identity (a UUID named by its number), so
loading again finds what is already there: an existing session is skipped,
or with ``replace`` deleted with its data and loaded afresh. Data is always
written before its session is created, so a session that exists is complete;
data left behind by an interrupted load (chunks without a session) is
cleared before writing, never merged with.
"""

import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Sum
from rta.model import data_pb2

from config_app.models import JSON_CONTENT_TYPE
from config_app.services import store as config_store
from data_app.demo import car
from data_app.demo import config as demo_config
from data_app.models import Chunk
from data_app.services.sink import DataSink
from rta_core.errors import InvalidArgument
from rta_core.timeutil import format_ns
from sessions_app.models import ROOT_FOLDER, ConfigBinding, Folder, FolderLink, Session, SessionState
from sessions_app.services import folders
from sessions_app.services.updates import create_or_update_session, delete_sessions

FOLDER = "demo"
FOLDER_LABEL = "Demo sessions"
MAX_SESSIONS = 20
ITEM_SAMPLES = 128  # bursts of up to 128 samples, as the quick-start sends them
SECOND = 1_000_000_000
SPACING = timedelta(minutes=75)  # between the starts of consecutive demo runs
DRIVERS = ["Alex Moreau", "Sam Keller", "Jo Tanaka", "Riley Okafor", "Kim Laine"]
STEPS = ("simulate", "write data", "create session")


def session_identity(index):
    """The fixed identity of demo session ``index`` (0-based)."""
    return str(uuid.uuid5(demo_config.NAMESPACE, f"session-{index}"))


def demo_identities():
    return [session_identity(i) for i in range(MAX_SESSIONS)]


@dataclass
class LoadedSession:
    index: int
    identity: str
    identifier: str
    status: str  # "loaded", "replaced" or "skipped"
    laps: int = 0
    best_lap: str = ""
    samples: int = 0
    stored_bytes: int = 0


@dataclass
class DemoResult:
    config_identifier: str
    config_published: bool
    sessions: list = field(default_factory=list)

    def count(self, status):
        return sum(1 for s in self.sessions if s.status == status)


def load_demo(sessions=3, minutes=10.0, replace=False, now=None, report=None):
    """Publish the demo config and load ``sessions`` demo sessions of ``minutes`` each.

    ``report(index, step)`` is called after each of ``STEPS`` of each session
    (skipped sessions report every step at once), for progress display.
    """
    if not 1 <= sessions <= MAX_SESSIONS:
        raise InvalidArgument(f"sessions must be between 1 and {MAX_SESSIONS}")
    if not 1 <= minutes <= 120:
        raise InvalidArgument("minutes must be between 1 and 120")
    report = report or (lambda index, step: None)
    identifier = demo_config.identifier()
    published = config_store.put_config(identifier, JSON_CONTENT_TYPE, demo_config.document_bytes())
    folders.put_folder(ROOT_FOLDER, FOLDER, FOLDER_LABEL, "Simulated test-day sessions loaded by manage.py load_demo")
    now = now or datetime.now(UTC)
    base = now.replace(second=0, microsecond=0) - SPACING * sessions
    result = DemoResult(identifier, published)
    for index in range(sessions):
        identity = session_identity(index)
        existing = Session.objects.filter(identity=identity).first()
        if existing is not None and not replace:
            result.sessions.append(_describe(index, existing, "skipped"))
            for step in STEPS:
                report(index, step)
            continue
        if existing is not None:
            delete_sessions([identity])
        start = base + SPACING * index
        loaded = _load_session(index, identity, start, minutes * 60.0, identifier, report)
        loaded.status = "replaced" if existing is not None else "loaded"
        result.sessions.append(loaded)
    return result


def _load_session(index, identity, start, duration, config_identifier, report):
    run = car.simulate(duration, seed=index + 1)
    report(index, "simulate")
    t0 = int(start.timestamp()) * SECOND
    delete_data(identity)  # whatever an interrupted load left behind
    sink = DataSink(identity)
    samples = write_run(sink, run, t0)
    sink.flush()
    report(index, "write data")
    end = t0 + int(round(duration * car.RATE_HZ) - 1) * car.INTERVAL_NS
    driver = DRIVERS[index % len(DRIVERS)]
    best = run.best_lap
    identifier = f"Demo Park run {index + 1} - {driver}"
    details = {
        "Circuit": "Demo Park",
        "Car": "RTA-01",
        "Driver": driver,
        "Run": index + 1,
        "Laps": len(run.laps),
        "FuelStart": round(run.timestamped["mFuel"][1][0], 1),
        "Demo": True,
    }
    if best is not None:
        details["BestLap"] = car.lap_time_text(best.time)
        details["BestLapTime"] = round(best.time, 3)
    create_or_update_session(
        identity,
        [
            ("set_time_range", (t0, end)),
            ("set_details", {"details": details}),
            ("set_type", "Practice"),
            ("set_markers", lap_markers(run, t0)),
            ("set_config_bindings", [{"identifier": config_identifier, "channel_offset": 0}]),
            ("set_folders", [FOLDER]),
        ],
        create={"timestamp": format_ns(t0), "identifier": identifier, "state": SessionState.CLOSED},
    )
    report(index, "create session")
    session = Session.objects.get(identity=identity)
    loaded = _describe(index, session, "loaded")
    loaded.samples = samples
    return loaded


def _describe(index, session, status):
    stats = Chunk.objects.filter(identity=session.identity).aggregate(
        samples=Sum("sample_count"), stored=Sum("packed_length")
    )
    return LoadedSession(
        index=index,
        identity=session.identity,
        identifier=session.identifier,
        status=status,
        laps=session.details.get("Laps", 0),
        best_lap=session.details.get("BestLap", ""),
        samples=stats["samples"] or 0,
        stored_bytes=stats["stored"] or 0,
    )


def _ns(seconds):
    return int(round(seconds * SECOND))


def write_run(sink, run, t0):
    """Add a simulated run's periodic, timestamped and event items to ``sink``; returns the sample count."""
    total = 0
    for name, values in run.periodic.items():
        channel = demo_config.CHANNEL_BY_NAME[name]
        raw = [channel.encode(v) for v in values]
        for i in range(0, len(raw), ITEM_SAMPLES):
            burst = raw[i : i + ITEM_SAMPLES]
            sink.add(
                "periodic",
                data_pb2.PeriodicData(
                    channel_id=channel.id,
                    start_timestamp=t0 + i * car.INTERVAL_NS,
                    interval=car.INTERVAL_NS,
                    samples=len(burst),
                    buffer=struct.pack(f"<{len(burst)}h", *burst),
                ),
            )
        total += len(raw)
    for name, (times, values) in run.timestamped.items():
        channel = demo_config.CHANNEL_BY_NAME[name]
        micros = [int(round(t * 1_000_000)) for t in times]
        for i in range(0, len(micros), ITEM_SAMPLES):
            part = micros[i : i + ITEM_SAMPLES]
            burst = values[i : i + ITEM_SAMPLES]
            sink.add(
                "timestamped",
                data_pb2.TimestampedData(
                    channel_id=channel.id,
                    start_timestamp=t0 + part[0] * 1000,
                    timestamp_deltas_scale=1000,
                    timestamp_deltas=[0] + [b - a for a, b in zip(part, part[1:])],
                    buffer=struct.pack(f"<{len(burst)}d", *(channel.encode(v) for v in burst)),
                ),
            )
        total += len(micros)
    for seconds, kind, _number, text, raw_data in run.events:
        sink.add(
            "events",
            data_pb2.Event(
                event_definition_id=demo_config.EVENTS[kind][0],
                app_name=demo_config.APP,
                timestamp=t0 + _ns(seconds),
                status_text=text,
                raw_data=raw_data,
            ),
        )
        total += 1
    return total


def lap_markers(run, t0):
    """One ``Laps`` marker per lap, as ATLAS shows them in its lap list."""
    best = run.best_lap
    markers = []
    for lap in run.laps:
        label = {"out": "Out lap", "in": "In lap"}.get(lap.kind, f"Lap {lap.number}")
        markers.append(
            {
                "id": f"lap-{lap.number}",
                "category": "Laps",
                "type": {"out": "OutLap", "in": "InLap"}.get(lap.kind, "Lap"),
                "label": label,
                "description": (
                    f"{label}: {car.lap_time_text(lap.time)}" + (" (best)" if lap is best else "")
                    if lap.complete
                    else f"{label}: cut short by the end of the session"
                ),
                "start_time": t0 + _ns(lap.start),
                "end_time": t0 + _ns(lap.end),
                "details": {"lapTime": round(lap.time, 3), "best": lap is best, "complete": lap.complete},
            }
        )
    return markers


def delete_data(identity):
    """Delete every stored chunk of ``identity`` from the index; returns how many.

    Only index rows go: the bytes they pointed at become segment garbage, which
    the store's compaction reclaims under its segment lock (a loader must not
    remove segment files a writer may be appending to).
    """
    deleted, _ = Chunk.objects.filter(identity=identity).delete()
    return deleted


@dataclass
class RemoveResult:
    sessions: int
    config_deleted: bool
    folder_deleted: bool


def remove_demo():
    """Delete the demo sessions and their data, the demo config unless another session binds it, and the
    demo folder if nothing else is linked into it."""
    identities = demo_identities()
    deleted = delete_sessions(identities)
    for identity in identities:
        delete_data(identity)
    identifier = demo_config.identifier()
    config_deleted = False
    if not ConfigBinding.objects.filter(identifier=identifier).exists():
        config_deleted = config_store.delete_config(identifier)
    folder_deleted = False
    folder = Folder.objects.filter(identity=FOLDER).first()
    if folder is not None and not FolderLink.objects.filter(folder=folder).exists() and not folder.children.exists():
        folders.delete_folders([FOLDER])
        folder_deleted = True
    return RemoveResult(deleted, config_deleted, folder_deleted)
