"""The CSV files this example serves: how they are found, opened safely, parsed and mapped to channels.

Shared by the adapter (``adapter.py``) and the indexer (``index.py``), so both
see the same fields, channels and kinds.

A data file is ``<name>.csv`` anywhere under the root; its data identity is
its path relative to the root with ``/`` separators (``2024/run 1.csv``).
The header row names the columns: the first is the time, integer
nanoseconds, or milliseconds when its name ends in ``_ms`` (decimals
allowed); every other column is a field, a number per row (an empty cell is a
missing sample). Rows are sorted by time when they are not already (a time
given twice keeps its last row).

A file is *regular* when its times are evenly spaced and no cell is empty:
its fields are then periodic channels at that interval; otherwise every field
is a timestamped channel holding the rows where it has a value.

Events, optional: ``<name>.events.csv`` beside the data file, with columns
``time`` (same units rule), ``event``, ``status`` and any number of value
columns.

Fields -> channels: the schema mapping stored for (``csv``, identity) in the
server's Schema Mapping Service (each field mapping: ``source_field`` = column
name, ``target_channel``, ``target_channel_data_type``); a field with no
mapping is not served. With no mapping at all, columns are channels in order:
the first field is channel 0, the next channel 1, ..., all ``f64``. Events
likewise: an event mapping whose ``source_event`` is the ``event`` cell gives
the event's app and id and, with ``source_event_data_fields``, which columns
are its values (other events are not served); when the mapping has no event
mappings, or there is no mapping, the ``event`` cell is the event id (decimal
or ``0x`` hex), the app is ``csv`` and every value column is a value.

Safety: nothing outside the root is ever opened. An identity is split at
``/``; empty, ``.`` and ``..`` parts are refused, and every part is opened
relative to its parent's open directory with ``O_NOFOLLOW``, so a symbolic
link (to anything, anywhere) is refused too, whatever happens to the tree
meanwhile. Only regular files are read.
"""

import csv
import io
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from rta_core.errors import NotFound

SOURCE = "csv"
DATA_SUFFIX = ".csv"
EVENTS_SUFFIX = ".events.csv"
MAX_FILE_BYTES = 512 * 1024 * 1024
CACHED_FILES = 16


@dataclass
class Table:
    """One parsed data file."""

    fields: list  # column names after the time column, in order
    times: np.ndarray  # int64 ns, increasing
    values: dict  # field -> float64 array (NaN where a cell is empty)
    present: dict  # field -> bool array (False where a cell is empty)
    interval: int | None  # the time step of a regular file, else None

    @property
    def kind(self):
        return "periodic" if self.interval is not None else "timestamped"


@dataclass
class EventRows:
    times: np.ndarray
    events: list  # the ``event`` cells
    statuses: list
    columns: list  # value column names
    values: dict = field(default_factory=dict)  # column -> float64 array (NaN if empty)


@dataclass(frozen=True)
class FieldChannel:
    field: str
    channel: int
    data_type: str  # "f64" ...


# --- opening files under the root ------------------------------------------------------------------


def split_identity(identity):
    """The path parts of a data identity; NotFound for anything that could leave the root."""
    parts = identity.split("/")
    if not identity or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise NotFound("no such data identity")
    return parts


def open_under(root, identity, suffix=DATA_SUFFIX):
    """The regular file ``identity`` names under ``root``, open for reading (binary); NotFound otherwise.

    Each part is opened relative to its parent's descriptor with O_NOFOLLOW:
    no ``..``, no symbolic link, no other file type is followed.
    """
    parts = split_identity(identity)
    if not parts[-1].endswith(suffix):
        raise NotFound("no such data identity")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                raise NotFound("no such data identity") from None
            os.close(fd)
            fd = child
        try:
            handle = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            raise NotFound("no such data identity") from None
    finally:
        os.close(fd)
    file = os.fdopen(handle, "rb")
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
        file.close()
        raise NotFound("no such data identity")
    return file


def data_files(root):
    """Identities of every data file under ``root`` (symbolic links are not followed), sorted."""
    root = Path(root)
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not (Path(folder) / d).is_symlink())
        for name in files:
            path = Path(folder) / name
            if name.endswith(DATA_SUFFIX) and not name.endswith(EVENTS_SUFFIX) and not path.is_symlink():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def events_identity(identity):
    return identity[: -len(DATA_SUFFIX)] + EVENTS_SUFFIX


# --- parsing -----------------------------------------------------------------------------------------


def _time_scale(header):
    return 1_000_000 if header.strip().lower().endswith("_ms") else 1


def _times(cells, scale):
    if scale == 1:
        return np.array([int(c) for c in cells], dtype=np.int64)
    try:
        return np.array([int(Decimal(c) * scale) for c in cells], dtype=np.int64)
    except InvalidOperation:
        raise ValueError("a time is not a number") from None


def _rows(data):
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    header = next(reader, None)
    if not header:
        raise ValueError("empty CSV file")
    rows = [row for row in reader if row]
    if any(len(row) != len(header) for row in rows):
        raise ValueError("a row does not have one cell per column")
    return [h.strip() for h in header], rows


def _sorted(times):
    """Indexes putting ``times`` in order, a time given twice keeping its last row."""
    if len(times) < 2 or (np.diff(times) > 0).all():
        return None
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    last = np.append(ordered[1:] != ordered[:-1], True)
    return order[last]


def parse_table(data):
    header, rows = _rows(data)
    if len(header) < 2:
        raise ValueError("a CSV data file needs a time column and at least one field")
    columns = list(zip(*rows)) if rows else [()] * len(header)
    times = _times(columns[0], _time_scale(header[0]))
    values, present = {}, {}
    for name, cells in zip(header[1:], columns[1:]):
        mask = np.array([c.strip() != "" for c in cells], dtype=bool)
        values[name] = np.array([float(c) if c.strip() != "" else np.nan for c in cells], dtype=np.float64)
        present[name] = mask
    order = _sorted(times)
    if order is not None:
        times = times[order]
        values = {k: v[order] for k, v in values.items()}
        present = {k: v[order] for k, v in present.items()}
    interval = None
    if len(times) >= 2 and all(m.all() for m in present.values()):
        gaps = np.diff(times)
        if (gaps == gaps[0]).all():
            interval = int(gaps[0])
    return Table(header[1:], times, values, present, interval)


def parse_events(data):
    header, rows = _rows(data)
    lowered = [h.lower() for h in header]
    if len(header) < 2 or lowered[1] != "event":
        raise ValueError("an events file has columns time, event[, status][, values...]")
    columns = list(zip(*rows)) if rows else [()] * len(header)
    times = _times(columns[0], _time_scale(header[0]))
    has_status = len(header) > 2 and lowered[2] == "status"
    first_value = 3 if has_status else 2
    values = {
        name: np.array([float(c) if c.strip() else np.nan for c in cells], dtype=np.float64)
        for name, cells in zip(header[first_value:], columns[first_value:])
    }
    statuses = list(columns[2]) if has_status else [""] * len(times)
    return EventRows(times, [c.strip() for c in columns[1]], statuses, header[first_value:], values)


# --- fields -> channels ------------------------------------------------------------------------------


def field_channels(table_fields, mapping):
    """The served fields as ``FieldChannel``s: from a schema mapping, or by column order without one."""
    from rta_kit.schema_client import fields

    if mapping is None:
        return [FieldChannel(name, i, "f64") for i, name in enumerate(table_fields)]
    known = set(table_fields)
    return [FieldChannel(f.source_field, f.channel, f.data_type) for f in fields(mapping) if f.source_field in known]


def event_id(text):
    """An ``event`` cell as an event id (decimal or 0x hex), without a mapping."""
    try:
        return int(text, 0)
    except ValueError:
        return None


# --- a small cache of parsed files --------------------------------------------------------------------


class Files:
    """Parsed files under ``root``, re-read when a file changes (size, time or inode)."""

    def __init__(self, root):
        self.root = str(Path(root).resolve())
        self._cache = OrderedDict()
        self._lock = threading.Lock()

    def table(self, identity):
        if identity.endswith(EVENTS_SUFFIX):
            raise NotFound("no such data identity")
        return self._parsed(identity, DATA_SUFFIX, parse_table)

    def events(self, identity):
        """The events of data file ``identity`` (None when it has no events file)."""
        if identity.endswith(EVENTS_SUFFIX) or not identity.endswith(DATA_SUFFIX):
            raise NotFound("no such data identity")
        open_under(self.root, identity).close()  # NotFound unless the data file exists
        try:
            return self._parsed(events_identity(identity), EVENTS_SUFFIX, parse_events)
        except NotFound:
            return None

    def _parsed(self, identity, suffix, parse):
        with open_under(self.root, identity, suffix) as file:
            info = os.fstat(file.fileno())
            key = (identity, info.st_ino, info.st_mtime_ns, info.st_size)
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            data = file.read()
        parsed = parse(data)
        with self._lock:
            self._cache[key] = parsed
            while len(self._cache) > CACHED_FILES:
                self._cache.popitem(last=False)
        return parsed
