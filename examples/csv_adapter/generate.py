"""Write a few sample CSV files to try the adapter with (see README.md).

    python examples/csv_adapter/generate.py --root DIR [--minutes 2]

- ``DIR/run 1.csv``: 100 Hz, regular (periodic channels), ns times, with a lap events file;
- ``DIR/2024/lap/run 2.csv``: irregular times in ms with holes (timestamped channels).
"""

import argparse
import math
import random
import time
from pathlib import Path


def write_regular(path, start_ns, seconds):
    with open(path, "w") as out:
        out.write("time_ns,vCar,nEngine,rThrottle\n")
        for i in range(int(seconds * 100)):
            t = i / 100
            speed = 180 + 120 * math.sin(t / 9)
            out.write(
                f"{start_ns + i * 10_000_000},{speed:.2f},{6000 + 40 * speed:.0f},{50 + 50 * math.sin(t / 4):.1f}\n"
            )
    with open(path.with_name(path.name[: -len(".csv")] + ".events.csv"), "w") as out:
        out.write("time_ns,event,status,lap,laptime\n")
        for lap in range(1, int(seconds // 30) + 1):
            out.write(f"{start_ns + lap * 30 * 1_000_000_000},1,lap {lap},{lap},{30 + random.random():.3f}\n")


def write_irregular(path, start_ns, seconds):
    rng = random.Random(7)
    with open(path, "w") as out:
        out.write("time_ms,TOil,TWater\n")
        t = start_ns // 1_000_000
        end = t + seconds * 1000
        while t < end:
            water = "" if rng.random() < 0.1 else f"{85 + rng.random() * 5:.2f}"
            out.write(f"{t},{100 + rng.random() * 10:.2f},{water}\n")
            t += rng.randint(50, 400)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--minutes", type=float, default=2.0)
    args = parser.parse_args(argv)
    root = Path(args.root)
    (root / "2024" / "lap").mkdir(parents=True, exist_ok=True)
    start = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000
    write_regular(root / "run 1.csv", start, args.minutes * 60)
    write_irregular(root / "2024" / "lap" / "run 2.csv", start, int(args.minutes * 60))
    print(f"wrote sample CSV files under {root}")


if __name__ == "__main__":
    main()
