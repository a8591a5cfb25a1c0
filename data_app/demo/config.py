"""The demo's configuration: which channels exist and how ATLAS names, scales and groups them.

Like the public RTA quick-start, one application (``demo``) maps each channel
onto one parameter. Periodic channels are 100 Hz signed 16-bit integers with
a rational (gain) conversion to engineering units; the slow channels are
timestamped 64-bit floats. The identifier is derived from the document's
bytes, so a changed demo publishes a new config instead of clashing with the
old immutable one.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass

from data_app.demo.car import INTERVAL_NS

APP = "demo"
NAMESPACE = uuid.UUID("0b6a51c2-4c5e-4f0e-9a8e-52a3c4f1d7a1")


@dataclass(frozen=True)
class Channel:
    id: int
    name: str  # parameter name (the simulation's signal name)
    desc: str
    unit: str
    source: str  # "periodic" or "timestamped"
    type: str  # "s16" or "f64"
    gain: float  # engineering value = raw x gain
    minimum: float
    maximum: float
    group: str
    format: str = "%5.1f"

    def encode(self, value):
        """Engineering value to the stored raw value (int16 raw values are clamped)."""
        if self.type == "f64":
            return float(value)
        return max(-32768, min(32767, int(round(value / self.gain))))


CHANNELS = [
    Channel(0, "vCar", "Car speed", "km/h", "periodic", "s16", 0.1, 0, 350, "Chassis"),
    Channel(1, "nEngine", "Engine speed", "rpm", "periodic", "s16", 1, 0, 13000, "Powertrain", "%5.0f"),
    Channel(2, "rThrottle", "Throttle pedal position", "%", "periodic", "s16", 0.1, 0, 100, "Driver"),
    Channel(3, "pBrake", "Front brake line pressure", "bar", "periodic", "s16", 0.1, 0, 130, "Driver"),
    Channel(4, "NGear", "Gear engaged (0 = neutral)", "", "periodic", "s16", 1, 0, 8, "Powertrain", "%1.0f"),
    Channel(
        5, "aSteerWheel", "Steering wheel angle (left positive)", "deg", "periodic", "s16", 0.1, -120, 120, "Driver"
    ),
    Channel(
        6, "gLat", "Lateral acceleration (left positive)", "g", "periodic", "s16", 0.001, -6, 6, "Chassis", "%5.2f"
    ),
    Channel(7, "gLong", "Longitudinal acceleration", "g", "periodic", "s16", 0.001, -6, 3, "Chassis", "%5.2f"),
    Channel(8, "TOil", "Engine oil temperature", "°C", "timestamped", "f64", 1, 60, 140, "Powertrain"),
    Channel(9, "TWater", "Engine water temperature", "°C", "timestamped", "f64", 1, 60, 120, "Powertrain"),
    Channel(10, "mFuel", "Fuel mass on board", "kg", "timestamped", "f64", 1, 0, 110, "Powertrain", "%5.2f"),
]
CHANNEL_BY_NAME = {c.name: c for c in CHANNELS}

# Event definitions: the simulation's event kinds -> (id, description, priority).
EVENTS = {
    "lap": (1, "Timing line crossed: raw data are lap number and lap time (s)", "low"),
    "pit_limiter_on": (2, "Pit lane speed limiter on", "medium"),
    "pit_limiter_off": (3, "Pit lane speed limiter off", "medium"),
    "engine_start": (4, "Engine started", "low"),
    "engine_stop": (5, "Engine stopped", "low"),
}


def _conversion_name(channel):
    return f"{channel.name}:{APP}"


def document():
    """The config document (a dict, as validated by ``config_app.services.validation``)."""
    groups = {}
    for channel in CHANNELS:
        groups.setdefault(channel.group, []).append(f"{channel.name}:{APP}")
    return {
        APP: {
            "desc": "RTA server demo car (simulated)",
            "tree": {"groups": [{"id": name, "desc": name, "params": params} for name, params in groups.items()]},
            "parameters": [
                {
                    "id": f"{c.name}:{APP}",
                    "name": c.name,
                    "desc": c.desc,
                    "unit": c.unit,
                    "format": c.format,
                    "min": c.minimum,
                    "max": c.maximum,
                    "conv": _conversion_name(c),
                    "channels": [c.id],
                }
                for c in CHANNELS
            ],
            "channels": [
                {
                    "id": c.id,
                    "name": c.name,
                    "source": c.source,
                    "type": c.type,
                    "interval": INTERVAL_NS if c.source == "periodic" else 0,
                }
                for c in CHANNELS
            ],
            # eng = (c1 raw^2 + c2 raw + c3) / (c4 raw^2 + c5 raw + c6): a plain gain here.
            "conversions": [
                {
                    "name": _conversion_name(c),
                    "unit": c.unit,
                    "format": c.format,
                    "rational": {"coeffs": [0, c.gain, 0, 0, 0, 1]},
                }
                for c in CHANNELS
            ]
            + [
                {"name": f"laptime:{APP}", "unit": "s", "format": "%7.3f", "rational": {"coeffs": [0, 1, 0, 0, 0, 1]}},
                {"name": f"lapnumber:{APP}", "unit": "", "format": "%3.0f", "rational": {"coeffs": [0, 1, 0, 0, 0, 1]}},
            ],
            "events": [
                {
                    "id": number,
                    "code": kind,
                    "desc": desc,
                    "pri": priority,
                    "convs": [f"lapnumber:{APP}", f"laptime:{APP}"] if kind == "lap" else [],
                }
                for kind, (number, desc, priority) in EVENTS.items()
            ],
        }
    }


def document_bytes():
    return json.dumps(document(), indent=1, ensure_ascii=False, sort_keys=True).encode("utf-8")


def identifier():
    """A UUID named by the document's bytes: stable while the demo config does not change."""
    return str(uuid.uuid5(NAMESPACE, hashlib.sha256(document_bytes()).hexdigest())).upper()
