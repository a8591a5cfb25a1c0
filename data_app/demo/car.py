"""A small lap simulation that makes believable telemetry for the demo sessions.

A car drives a fictional circuit ("Demo Park", about 4.5 km): leaves the
garage, an out lap, a few flying laps, an in lap through the pit lane, then
stops. The speed profile is the classic quasi-steady lap-time model: each
metre of track has a cornering speed limit (grip grows with downforce, so
with speed), a forward pass limits acceleration (traction, then power minus
drag) and a backward pass limits braking. Throttle, brake, gear, rpm,
steering and accelerations follow from the speed profile; temperatures and
fuel are first-order models of the engine load. Everything is seeded, so a
demo session always holds the same data.

Pure Python on purpose (no numpy): a 10-minute run is ~25k track points and
60k samples per channel, well under a second.
"""

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field

G = 9.81
DS = 2.0  # metres per track grid step
RATE_HZ = 100  # periodic channels
INTERVAL_NS = 1_000_000_000 // RATE_HZ
PIT_LIMIT = 80 / 3.6  # m/s
PIT_BOX = 120.0  # metres after the timing line (pit lane runs beside the main straight)
PIT_EXIT = 420.0  # metres after the line
PIT_ENTRY = 380.0  # metres before the line
V_MAX = 93.0  # m/s, about 335 km/h

# The circuit from the timing line: (length m, radius m; + left, - right, 0 straight).
TRACK = [
    (300, 0),
    (65, -25),
    (350, 0),
    (125, 120),
    (125, -80),
    (500, 0),
    (40, 40),
    (40, -40),
    (300, 0),
    (300, -250),
    (450, 0),
    (110, 60),
    (250, 0),
    (70, -35),
    (380, 0),
    (200, 150),
    (200, 0),
    (90, -45),
    (600, 0),
]
LAP_LENGTH = float(sum(length for length, _ in TRACK))

# Gearbox: 8 speeds; rpm = speed (m/s) x ratio.
GEAR_RATIOS = [600 / (1.24**g) for g in range(8)]
UPSHIFT_RPM, DOWNSHIFT_RPM, IDLE_RPM, MIN_DRIVE_RPM = 11_800, 7_500, 1_050, 4_000


def _curvature():
    """Signed curvature (1/m) per grid step of one lap, smoothed so corners ramp in and out."""
    raw = []
    for length, radius in TRACK:
        raw += [1.0 / radius if radius else 0.0] * int(round(length / DS))
    n, half = len(raw), 12  # +-24 m moving average, wrapping round the lap
    window = sum(raw[i % n] for i in range(-half, half + 1))
    out = []
    for i in range(n):
        out.append(window / (2 * half + 1))
        window += raw[(i + half + 1) % n] - raw[(i - half) % n]
    return out


KAPPA = _curvature()


def corner_speed(kappa, grip):
    """Highest speed through curvature ``kappa``: v^2 |k| = grip g (1.6 + 4.9e-4 v^2)."""
    k = abs(kappa) - grip * G * 4.9e-4
    if k <= 0:
        return V_MAX
    return min(V_MAX, math.sqrt(1.6 * grip * G / k))


def drive_accel(v, pace):
    """Forward acceleration at full throttle: traction-limited, then power-limited, less drag."""
    return pace * min(1.35 * G, 800.0 / max(v, 1.0)) - 1.1e-3 * v * v


def brake_decel(v, grip):
    return grip * (1.5 * G + 4.6e-3 * v * v) + 1.1e-3 * v * v


@dataclass
class Lap:
    kind: str  # "out", "flying" or "in"
    number: int  # 0 for the out lap
    start: float  # seconds since the session started
    end: float
    complete: bool = True  # False for a lap the end of the session cuts short

    @property
    def time(self):
        return self.end - self.start


@dataclass
class Run:
    """The simulated session: signals keyed by parameter name, laps and events."""

    duration: float  # seconds
    periodic: dict = field(default_factory=dict)  # name -> [value per 1/RATE_HZ s]
    timestamped: dict = field(default_factory=dict)  # name -> ([seconds], [value])
    laps: list = field(default_factory=list)
    events: list = field(default_factory=list)  # (seconds, kind, number, text, [values])

    @property
    def best_lap(self):
        flying = [lap for lap in self.laps if lap.kind == "flying" and lap.complete]
        return min(flying, key=lambda lap: lap.time) if flying else None


def _plan(flying, rng):
    """Per-lap grip and pace: out and in laps are easy, tyres come in over the first flying lap."""
    laps = [("out", 0.72, 0.55)]
    for n in range(flying):
        grip = (0.965 if n == 0 else 1.0) * rng.uniform(0.985, 1.0)
        laps.append(("flying", grip, 1.0))
    laps.append(("in", 0.70, 0.5))
    return laps


def _speed_profile(plan, rng):
    """Distances, speeds and the binding constraint per grid step for the whole run."""
    n_lap = len(KAPPA)
    start = int(PIT_BOX / DS)
    end = len(plan) * n_lap + start
    limit, pace_of, grip_of = [], [], []
    # A lock-up or a lift on some laps: 80 m of one corner a little slower.
    mistakes = set()
    for lap in range(1, len(plan) - 1):
        if rng.random() < 0.35:
            at = rng.randrange(n_lap)
            mistakes.update((lap, j % n_lap) for j in range(at, at + 40))
    for i in range(start, end + 1):
        lap, j = divmod(i, n_lap)
        lap = min(lap, len(plan) - 1)
        kind, grip, pace = plan[lap]
        v = corner_speed(KAPPA[j], grip)
        if (lap, j) in mistakes:
            v *= 0.93
        d = i * DS
        if d < PIT_EXIT or d > len(plan) * LAP_LENGTH - PIT_ENTRY:
            v = min(v, PIT_LIMIT)
        limit.append(v)
        pace_of.append(pace)
        grip_of.append(grip)
    v = list(limit)
    v[0] = 0.0
    for i in range(len(v) - 1):  # acceleration limit
        v[i + 1] = min(v[i + 1], math.sqrt(v[i] ** 2 + 2 * max(drive_accel(v[i], pace_of[i]), 0.0) * DS))
    v[-1] = 0.0
    for i in range(len(v) - 1, 0, -1):  # braking limit
        v[i - 1] = min(v[i - 1], math.sqrt(v[i] ** 2 + 2 * brake_decel(v[i], grip_of[i]) * DS))
    distances = [(start + i) * DS for i in range(len(v))]
    return distances, v


def _times(distances, speeds):
    t = [0.0]
    for i in range(1, len(speeds)):
        t.append(t[-1] + DS / max((speeds[i - 1] + speeds[i]) / 2, 0.4))
    return t


def simulate(duration=600.0, seed=1):
    """A seeded run that fills ``duration`` seconds (as many flying laps as fit, the rest in the garage)."""
    rng = random.Random(seed)
    # Out and in laps take about 3.5 min, a flying lap about 75 s: start from a guess that is too many.
    flying = max(0, int((duration - 180) / 70))
    while True:
        plan = _plan(flying, random.Random(seed))
        distances, speeds = _speed_profile(plan, random.Random(seed + 7))
        times = _times(distances, speeds)
        if times[-1] + 10 <= duration or flying == 0:
            break
        flying -= 1
    spare = max(duration - times[-1], 0.0)
    leave = max(min(spare * 0.6, 60.0), 5.0)  # engine warm-up in the garage before leaving
    run = Run(duration=duration)
    n = int(round(duration * RATE_HZ))
    sample_t = [i / RATE_HZ for i in range(n)]

    # Speed, distance and curvature per sample.
    speed, dist, kappa = [], [], []
    for t in sample_t:
        local = t - leave
        if local <= 0 or local >= times[-1]:
            speed.append(0.0)
            dist.append(distances[0] if local <= 0 else distances[-1])
        else:
            k = bisect_right(times, local) - 1
            f = (local - times[k]) / (times[k + 1] - times[k])
            speed.append(speeds[k] + f * (speeds[k + 1] - speeds[k]))
            dist.append(distances[k] + f * DS)
        kappa.append(KAPPA[int(dist[-1] / DS) % len(KAPPA)])

    # Laps: the timing line is crossed at multiples of the lap length.
    crossings = []
    for lap in range(1, len(plan) + 1):
        k = bisect_right(distances, lap * LAP_LENGTH) - 1
        crossings.append(leave + times[min(k, len(times) - 1)])
    edges = [leave] + crossings
    for index, (kind, _, _) in enumerate(plan):
        if edges[index] < duration:  # a session too short for the whole plan cuts the run short
            end = edges[index + 1]
            run.laps.append(Lap(kind, index, edges[index], min(end, duration), end <= duration))

    moving = [leave < t < leave + times[-1] for t in sample_t]
    run.periodic["vCar"] = [max(v * 3.6 + rng.gauss(0, 0.25) * (v > 0), 0.0) for v in speed]
    _driver_inputs(run, speed, kappa, moving, rng)
    _powertrain(run, speed, moving, leave, leave + times[-1], rng)
    _chassis(run, speed, kappa, rng)
    _slow_channels(run, rng)
    _events(run, leave, edges, distances, times)
    return run


def _lowpass(values, tau, dt=1 / RATE_HZ):
    alpha = dt / (tau + dt)
    out, y = [], values[0] if values else 0.0
    for x in values:
        y += alpha * (x - y)
        out.append(y)
    return out


def _derivative(values, span=4):
    n = len(values)
    return [
        (values[min(i + span, n - 1)] - values[max(i - span, 0)])
        / ((min(i + span, n - 1) - max(i - span, 0)) / RATE_HZ or 1)
        for i in range(n)
    ]


def _driver_inputs(run, speed, kappa, moving, rng):
    accel = _derivative(speed)
    throttle, brake = [], []
    for v, a, on in zip(speed, accel, moving):
        if not on:
            throttle.append(0.0)
            brake.append(0.0)
        elif a < -2.5:
            throttle.append(0.0)
            brake.append(min(-a / (4.6 * G) * 120.0, 125.0))
        elif a > 0.5 * max(drive_accel(v, 1.0), 0.2):
            throttle.append(100.0)  # accelerating with at least half of what the engine can give
            brake.append(0.0)
        else:
            # Holding speed: enough throttle to beat drag, with the driver's small corrections.
            need = 1.1e-3 * v * v * v / 800.0 * 100.0
            throttle.append(min(max(need * 1.6 + 12.0 + rng.gauss(0, 3.0), 5.0), 85.0))
            brake.append(0.0)
    run.periodic["rThrottle"] = [min(max(x, 0.0), 100.0) for x in _lowpass(throttle, 0.06)]
    run.periodic["pBrake"] = [max(x + rng.gauss(0, 0.4) * (x > 1), 0.0) for x in _lowpass(brake, 0.04)]
    lat = [v * v * k for v, k in zip(speed, kappa)]
    run.periodic["aSteerWheel"] = [
        math.degrees(math.atan(3.6 * k)) * 12.0 * (1 + 0.015 * abs(a) / G) + rng.gauss(0, 0.4)
        for k, a in zip(kappa, lat)
    ]


def _powertrain(run, speed, moving, leave, stop, rng):
    gear, gears, rpms = 1, [], []
    n = len(speed)
    for i, (v, on) in enumerate(zip(speed, moving)):
        t = i / RATE_HZ
        if not on:
            gear = 1
            if t < 3.0 or t > stop + 8.0:
                rpm = 0.0  # engine off: before start-up and after the stop
            elif t < 3.6:
                rpm = 1800.0 * (t - 3.0) / 0.6
            else:
                rpm = IDLE_RPM + 250.0 * math.exp(-(t - 3.6) / 2.0)
            gears.append(0)
            rpms.append(max(rpm + rng.gauss(0, 12) * (rpm > 0), 0.0))
            continue
        while gear < 8 and v * GEAR_RATIOS[gear - 1] > UPSHIFT_RPM:
            gear += 1
        while gear > 1 and v * GEAR_RATIOS[gear - 1] < DOWNSHIFT_RPM:
            gear -= 1
        rpms.append(max(v * GEAR_RATIOS[gear - 1], MIN_DRIVE_RPM) + rng.gauss(0, 25))
        gears.append(gear)
    run.periodic["nEngine"] = rpms
    run.periodic["NGear"] = gears
    run.engine_on = (3.0, min(stop + 8.0, n / RATE_HZ))


def _chassis(run, speed, kappa, rng):
    accel = _derivative(speed, span=3)
    bump = 0.0
    lat, lon = [], []
    for v, k, a in zip(speed, kappa, accel):
        bump = 0.85 * bump + rng.gauss(0, 0.02) * min(v / 30.0, 1.0)  # kerbs and bumps, coloured noise
        lat.append(v * v * k / G + bump + rng.gauss(0, 0.015) * (v > 0))
        lon.append(a / G + 0.6 * bump + rng.gauss(0, 0.01) * (v > 0))
    run.periodic["gLat"] = lat
    run.periodic["gLong"] = lon


def _slow_channels(run, rng):
    """Temperatures and fuel at irregular times (~2 Hz): timestamped f64 channels."""
    rpm, throttle = run.periodic["nEngine"], run.periodic["rThrottle"]
    oil, water, fuel = 78.0, 74.0, 42.0
    t, last = 0.0, 0.0
    series = {"TOil": ([], []), "TWater": ([], []), "mFuel": ([], [])}
    while t < run.duration:
        i = min(int(t * RATE_HZ), len(rpm) - 1)
        dt = t - last
        load = (rpm[i] / 12_000.0) * (0.3 + 0.7 * throttle[i] / 100.0)
        oil += (92.0 + 30.0 * load - oil) * min(dt / 45.0, 1.0)
        water += (84.0 + 18.0 * load - water) * min(dt / 30.0, 1.0)
        fuel -= (0.034 * (throttle[i] / 100.0) * (rpm[i] / 12_000.0) + 0.0004 * (rpm[i] > 0)) * dt
        for name, value, noise in (("TOil", oil, 0.08), ("TWater", water, 0.06), ("mFuel", fuel, 0.002)):
            series[name][0].append(t)
            series[name][1].append(round(value + rng.gauss(0, noise), 3))
        last = t
        t += rng.uniform(0.3, 0.7)
    run.timestamped.update(series)


def _events(run, leave, edges, distances, times):
    on, off = run.engine_on
    run.events.append((on, "engine_start", 0, "Engine start", []))
    run.events.append((leave, "pit_limiter_on", 0, "Pit limiter on", []))
    exit_t = leave + times[bisect_right(distances, PIT_EXIT) - 1]
    run.events.append((exit_t, "pit_limiter_off", 0, "Pit limiter off", []))
    for lap in run.laps:
        if not lap.complete:
            continue
        text = {"out": "Out lap", "in": "In lap"}.get(lap.kind, f"Lap {lap.number}") + f" {lap_time_text(lap.time)}"
        run.events.append((lap.end, "lap", lap.number, text, [float(lap.number), round(lap.time, 3)]))
    entry_t = leave + times[bisect_right(distances, (len(edges) - 1) * LAP_LENGTH - PIT_ENTRY) - 1]
    run.events.append((entry_t, "pit_limiter_on", 0, "Pit limiter on", []))
    if off < run.duration:
        run.events.append((off, "engine_stop", 0, "Engine stop", []))
    run.events = sorted((e for e in run.events if e[0] < run.duration), key=lambda e: e[0])


def lap_time_text(seconds):
    """``1:32.456``."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:06.3f}"
