"""What the SQLite and SQL indexers find in a series store: its fields, their intervals and the time range.

Each field's interval is detected from the start of its data, by the rule the
sources serve by (``series``): every gap between present samples a whole
multiple of the most common one makes the field regular at that interval
(holes allowed); anything else is irregular (timestamped only).
"""

from dataclasses import dataclass

from data_app.sources.mappings import Mapping
from data_app.sources.series import present_samples, regular_interval

PROBE_SPANS = (1_000_000_000, 100_000_000_000, 10_000_000_000_000)  # ns of data read before the whole range
PROBE_SAMPLES = 1000  # present samples per field that settle its interval


@dataclass(frozen=True)
class Found:
    name: str
    group: object
    interval: int | None  # ns; None: irregular


def unmapped():
    """The empty mapping: the store's own fields, in its order."""
    return Mapping({}, (), (), False)


def find(source, identity, mapping=None):
    """``([Found], start, end)`` of ``identity`` in ``source``; ``([], None, None)`` without data."""
    mapping = mapping or unmapped()
    fields = source.store_fields(identity, mapping)
    groups = {}
    for f in fields:
        groups.setdefault(f.group, []).append(f.name)
    found, starts, ends = {}, [], []
    for group, names in groups.items():
        extent = source.time_range(identity, mapping, group)
        if extent is None:
            continue
        starts.append(extent[0])
        ends.append(extent[1])
        found.update(_intervals(source, identity, mapping, group, names, extent))
    out = [Found(f.name, f.group, found[f.name]) for f in fields if f.name in found]
    return out, min(starts, default=None), max(ends, default=None)


def _intervals(source, identity, mapping, group, names, extent):
    """``{name: interval or None}`` from the first ``PROBE_SAMPLES`` samples of each field (or all it has)."""
    for span in (*PROBE_SPANS, None):
        high = extent[1] if span is None else min(extent[1], extent[0] + span)
        times, columns = source.read(identity, mapping, group, names, extent[0], high)
        present = {n: present_samples(times, columns.get(n))[0] for n in names}
        if high >= extent[1] or all(len(t) >= PROBE_SAMPLES for t in present.values()):
            break
    return {n: regular_interval(t[:PROBE_SAMPLES]) for n, t in present.items()}
