"""What ``manage.py index_parquet`` publishes: the identities under a folder and what each holds.

Identities: every folder holding only Parquet files (hidden files aside) is
one identity (its files in time order are one series); every other Parquet
file is one. Symlinks are never followed. Each is described from its files'
footers and first row group: fields (numeric columns) with their types and
intervals (regular when every gap at the start is a whole multiple of the
most common one), the time range from the row-group statistics, and the
first file's key/value metadata as session details (``identifier`` names the
session).
"""

import os

import numpy as np
import pyarrow as pa

from data_app.sources import parquet_files as files
from data_app.sources.indexed import IndexedData, IndexedField
from data_app.sources.mappings import Mapping
from data_app.sources.parquet import groups
from data_app.sources.series import present_samples, regular_interval

PROBE_SAMPLES = 100_000  # samples of a field's start its interval is detected from
DETAIL_CHARS = 256  # longer metadata values (a pandas schema ...) are not details
SKIPPED_METADATA = ("ARROW:", "pandas", "org.apache.spark")
TYPES = {
    pa.int8(): "s8",
    pa.uint8(): "u8",
    pa.int16(): "s16",
    pa.uint16(): "u16",
    pa.int32(): "s32",
    pa.uint32(): "u32",
    pa.float32(): "f32",
    pa.float64(): "f64",
    pa.bool_(): "u8",
}


def identities(root, folder):
    """Identities (paths relative to ``root``) under ``folder`` (``root`` or a folder inside it), sorted."""
    found = []
    for path, dirs, names in os.walk(folder, followlinks=False):
        visible = [n for n in names if not n.startswith(".")]
        parquet = [n for n in visible if n.endswith(files.SUFFIXES) and _regular(os.path.join(path, n))]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative = os.path.relpath(path, root)
        whole = path != root and parquet and len(parquet) == len(visible) and not dirs
        if whole:
            found.append(relative)
        else:
            found += [os.path.normpath(os.path.join(relative, n)) for n in parquet]
    return sorted(found)


def _regular(path):
    return os.path.isfile(path) and not os.path.islink(path)


def describe(source, identity, properties=None):
    """The ``IndexedData`` of ``identity`` in the Parquet ``source``, or None when it holds no field.

    ``properties``: the mapping's ``time_column`` / ``time_unit`` when not the defaults.
    """
    properties = dict(properties or {})
    with source.opened(identity, Mapping(properties, (), (), False)) as found:
        extents = [f.index.extent for f in found if f.index.extent is not None]
        if not extents:
            return None
        time = found[0].index.time
        fields = []
        for _, names in groups(found):
            intervals = _intervals(source, found, names)
            for name in names:
                arrow_type = next(f.index.schema.field(name).type for f in found if name in f.fields)
                fields.append(
                    IndexedField(name, TYPES.get(arrow_type, "f64"), intervals.get(name), source_type=str(arrow_type))
                )
        details = _details(found[0].index.metadata)
    properties["time_column"] = time.name
    if time.kind != "timestamp":
        properties.setdefault("time_unit", "ns")
    return IndexedData(
        fields=fields,
        start=min(e[0] for e in extents),
        end=max(e[1] for e in extents),
        identifier=details.pop("identifier", "")[:200],
        details=details,
        properties=properties,
    )


def _intervals(source, found, names):
    """``{name: interval ns}`` of the regular fields of one group, from the first row group holding each."""
    out = {}
    for name in names:
        for f in found:
            if name not in f.fields or not f.index.metadata.num_row_groups:
                continue
            first = int(np.argmin(np.where(f.index.rows > 0, f.index.first, np.iinfo(np.int64).max)))
            decoded = source.row_group(f, first, [name])
            times, values = decoded.times, decoded.columns[name]
            times = present_samples(times, values)[0]
            out[name] = regular_interval(times[:PROBE_SAMPLES])
            break
    return {name: interval for name, interval in out.items() if interval}


def _details(metadata):
    """Short key/value metadata of a file (schema-describing keys skipped), as text."""
    out = {}
    for key, value in (metadata.metadata or {}).items():
        try:
            key, value = key.decode(), value.decode()
        except UnicodeDecodeError:
            continue
        if key.startswith(SKIPPED_METADATA) or len(value) > DETAIL_CHARS or not value.isprintable():
            continue
        out[key] = value
    return out
