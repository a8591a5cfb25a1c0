"""Parquet files under a root, opened safely, with a cache of what their footers say.

Safety: an identity is a path under the root (relative, or absolute with the
root as prefix). It is opened one component at a time from the root's
directory descriptor with ``O_NOFOLLOW`` and ``..``/``.`` refused, so no
symlink, no ``..`` and no path elsewhere is ever followed or opened, even if
the tree changes under us (pyarrow then opens ``/proc/self/fd/N``: the very
file we checked). Anything refused is ``NotFound``, naming no path.

Speed: a file's footer (``FileMetaData``) and the first/last time of each row
group (from the time column's statistics, else read once) are cached, keyed
by inode, size and mtime, so a replaced or rewritten file is read again.
"""

import json
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rta_core.errors import NotFound

SUFFIXES = (".parquet", ".parq", ".pq")
CACHE_ENTRIES = 4096  # files whose footers stay cached
COLUMN_CACHE_BYTES = 256 << 20  # decoded row-group columns kept (ColumnCache)
UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_LOGICAL_UNITS = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000}
_PROC_FD = os.path.isdir("/proc/self/fd")
# No symlink followed; O_NONBLOCK so a FIFO under the root cannot hang a request (refused as not a regular file).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def refused():
    return NotFound("no such data in this source")


# --- opening under the root ----------------------------------------------------------------


def relative_parts(root, identity):
    """The path components of ``identity`` below ``root`` (a resolved absolute path); NotFound if outside."""
    if not isinstance(identity, str) or not identity or "\0" in identity:
        raise refused()
    path = identity
    if os.path.isabs(path):
        prefix = root.rstrip(os.sep) + os.sep
        if path.rstrip(os.sep) == root.rstrip(os.sep):
            return []
        if not path.startswith(prefix):
            raise refused()
        path = path[len(prefix) :]
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise refused()
    return parts


class Opened:
    """A descriptor of a file or folder under the root (close it); ``stat`` from ``fstat``."""

    def __init__(self, fd):
        self.fd = fd
        self.stat = os.fstat(fd)

    @property
    def is_dir(self):
        return stat.S_ISDIR(self.stat.st_mode)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_under(root, parts):
    """``Opened`` of ``root/parts...`` following no symlink; NotFound when missing or not allowed."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise refused() from None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            child = os.open(part, _OPEN_FLAGS | (0 if last else os.O_DIRECTORY), dir_fd=fd)
            os.close(fd)
            fd = child
        opened = Opened(fd)
    except OSError:
        os.close(fd)
        raise refused() from None
    if not (opened.is_dir or stat.S_ISREG(opened.stat.st_mode)):
        opened.close()
        raise refused()
    return opened


def folder_files(folder):
    """``[(name, Opened)]`` of the regular Parquet files directly in the ``Opened`` folder (no symlinks)."""
    out = []
    with os.scandir(folder.fd) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(SUFFIXES) and not e.name.startswith("."))
    for name in names:
        try:
            fd = os.open(name, _OPEN_FLAGS, dir_fd=folder.fd)
        except OSError:
            continue  # a symlink, or gone meanwhile
        opened = Opened(fd)
        if stat.S_ISREG(opened.stat.st_mode):
            out.append((name, opened))
        else:
            opened.close()
    return out


def arrow_file(opened):
    """A pyarrow input file reading exactly the ``Opened`` file (not whatever its name points at now)."""
    if _PROC_FD:
        return pa.OSFile(f"/proc/self/fd/{opened.fd}")
    return pa.PythonFile(os.fdopen(os.dup(opened.fd), "rb"), mode="r")


# --- what a file holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeColumn:
    """How to read a file's time column as int64 ns."""

    name: str
    index: int  # in the Parquet schema (leaf columns)
    scale: int  # ns per stored unit
    kind: str  # "int", "float" or "timestamp"


@dataclass
class FileIndex:
    """A file's footer and its time extent per row group."""

    metadata: pq.FileMetaData
    schema: pa.Schema
    time: TimeColumn
    first: np.ndarray  # int64 ns, per row group
    last: np.ndarray
    rows: np.ndarray

    @property
    def extent(self):
        present = self.rows > 0
        if not present.any():
            return None
        return int(self.first[present].min()), int(self.last[present].max())

    def row_groups(self, low, high):
        """Indexes of the row groups that may hold times in ``[low, high]``."""
        hit = (self.rows > 0) & (self.first <= high) & (self.last >= low)
        return np.flatnonzero(hit).tolist()

    def value_fields(self):
        """``[pa.Field]`` of the numeric columns but the time column, in file order."""
        return [f for f in self.schema if f.name != self.time.name and is_numeric(f.type)]


def is_numeric(arrow_type):
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)


def time_column(schema, name="", unit=""):
    """The ``TimeColumn`` of ``schema``: ``name`` (default: the first timestamp column, else ``time``)."""
    if not name:
        name = next((f.name for f in schema if pa.types.is_timestamp(f.type)), "time")
    index = schema.get_field_index(name)
    if index < 0:
        raise NotFound("the time column is missing")
    arrow_type = schema.field(index).type
    if pa.types.is_timestamp(arrow_type):
        return TimeColumn(name, index, UNITS[arrow_type.unit], "timestamp")
    scale = UNITS.get(unit or "ns")
    if scale is None:
        raise NotFound("the time unit is not one of ns, us, ms, s")
    if pa.types.is_integer(arrow_type):
        return TimeColumn(name, index, scale, "int")
    if pa.types.is_floating(arrow_type):
        return TimeColumn(name, index, scale, "float")
    raise NotFound("the time column is not a number or a timestamp")


def to_ns(column, time):
    """A pyarrow (chunked) array of the time column as int64 ns numpy."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        raise NotFound("the time column has empty values")
    if time.kind == "timestamp":
        values = column.view(pa.int64()).to_numpy(zero_copy_only=False)
    else:
        values = column.to_numpy(zero_copy_only=False)
    if time.kind == "float":
        return np.rint(values * time.scale).astype(np.int64)
    values = values.astype(np.int64, copy=False)
    return values * time.scale if time.scale != 1 else values


class IndexCache:
    """``FileIndex`` per (device, inode, size, mtime, time column, unit), least recently used dropped.

    Keyed by the file itself, not its name: a file replaced (a new inode) or
    rewritten (a new size or mtime) is read again.
    """

    def __init__(self, entries=CACHE_ENTRIES):
        self.entries = entries
        self._lock = threading.Lock()
        self._items = OrderedDict()

    def get(self, opened, time_name, time_unit):
        st = opened.stat
        full = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, time_name, time_unit)
        with self._lock:
            found = self._items.get(full)
            if found is not None:
                self._items.move_to_end(full)
                return found
        index = read_index(opened, time_name, time_unit)
        with self._lock:
            self._items[full] = index
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return index

    def clear(self):
        with self._lock:
            self._items.clear()


def read_index(opened, time_name, time_unit):
    """The ``FileIndex`` of an ``Opened`` Parquet file (footer, time statistics; the time column if need be)."""
    try:
        with arrow_file(opened) as source:
            parquet = pq.ParquetFile(source)
            metadata, schema = parquet.metadata, parquet.schema_arrow
            time = time_column(schema, time_name, time_unit)
            leaf = _leaf_index(metadata, time.name)
            count = metadata.num_row_groups
            first, last = np.zeros(count, np.int64), np.zeros(count, np.int64)
            rows = np.array([metadata.row_group(i).num_rows for i in range(count)], np.int64)
            for i in range(count):
                bounds = _statistics(metadata.row_group(i).column(leaf), time) if rows[i] else (0, 0)
                if bounds is None:
                    times = to_ns(parquet.read_row_group(i, columns=[time.name]).column(0), time)
                    bounds = (int(times.min()), int(times.max())) if len(times) else (0, 0)
                first[i], last[i] = bounds
    except (pa.ArrowException, OSError) as exc:
        raise BrokenFile() from exc
    return FileIndex(metadata, schema, time, first, last, rows)


class BrokenFile(Exception):
    """A file that is not readable Parquet (the store's fault: a 5xx, naming no path)."""


def _leaf_index(metadata, name):
    schema = metadata.schema
    for i in range(len(schema)):
        if schema.column(i).path == name:
            return i
    raise NotFound("the time column is missing")


def _statistics(column, time):
    """``(first, last)`` ns of a row group's time column from its statistics, or None when unusable."""
    stats = column.statistics
    if stats is None or not stats.has_min_max or column.physical_type not in ("INT32", "INT64", "FLOAT", "DOUBLE"):
        return None
    scale = time.scale
    if time.kind == "timestamp":
        logical = json.loads(column.statistics.logical_type.to_json() or "{}")
        scale = _LOGICAL_UNITS.get(logical.get("timeUnit"))
        if scale is None:
            return None
    low, high = stats.min_raw, stats.max_raw
    if time.kind == "float":
        return int(round(low * scale)), int(round(high * scale))
    return int(low) * scale, int(high) * scale


# --- decoded row groups ----------------------------------------------------------------------


class ColumnCache:
    """Decoded columns of recently read row groups, as numpy, at most ``budget`` bytes (least recent dropped).

    A request is read in slices of whole 100 s windows that seldom line up
    with row groups, so most row groups serve two consecutive slices: kept
    decoded, each is decoded once (reads of the slices after run ahead in
    other threads: one waits for a row group another is decoding). Keyed by
    the file itself (as ``IndexCache``).
    """

    def __init__(self, budget=COLUMN_CACHE_BYTES):
        self.budget = budget
        self._lock = threading.Lock()
        self._items = OrderedDict()
        self._bytes = 0
        self._pending = {}  # row group key -> Event set when the read decoding it is done

    def columns(self, opened, index, row_group, names):
        """``RowGroup`` of ``row_group`` with the ``names`` columns, decoding what is not cached (a row group
        another read is decoding is waited for, not decoded twice)."""
        base = _key(opened, index, row_group)
        while True:
            with self._lock:
                pending = self._pending.get(base)
                if pending is None:
                    out, missing = self._cached(base, [index.time.name, *names])
                    if missing:
                        done = self._pending[base] = threading.Event()
                    break
            pending.wait()
        if missing:
            try:
                out.update(self._decode(opened, index, row_group, missing, base))
            finally:
                with self._lock:
                    self._pending.pop(base, None)
                done.set()
        times, ascending = out.pop(index.time.name)
        return RowGroup(times, ascending, out)

    def clear(self):
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _cached(self, base, names):
        """``({name: value}, [missing names])`` (the caller holds the lock)."""
        out, missing = {}, []
        for name in names:
            found = self._items.get((*base, name))
            if found is None:
                missing.append(name)
            else:
                self._items.move_to_end((*base, name))
                out[name] = found
        return out, missing

    def _decode(self, opened, index, row_group, names, base):
        decoded = decode(opened, index, row_group, names)
        with self._lock:
            for name, value in decoded.items():
                key = (*base, name)
                if key not in self._items:
                    self._items[key] = value
                    self._bytes += _nbytes(value)
            while self._bytes > self.budget and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= _nbytes(dropped)
        return decoded


@dataclass(frozen=True)
class RowGroup:
    """A decoded row group: int64 ns ``times`` (``ascending`` when sorted) and ``{name: values}``."""

    times: np.ndarray
    ascending: bool
    columns: dict


def _key(opened, index, row_group):
    """A row group's cache key: the file itself and how its time column is read (mappings may differ)."""
    st = opened.stat
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, index.time, row_group


def _nbytes(value):
    return value[0].nbytes if isinstance(value, tuple) else value.nbytes


def decode(opened, index, row_group, names):
    """``{name: values}`` of ``names`` in one row group; the time column as ``(int64 ns, ascending)``."""
    with arrow_file(opened) as source:
        parquet = pq.ParquetFile(source, metadata=index.metadata)
        table = parquet.read_row_group(row_group, columns=names, use_threads=True)
    out = {}
    for name, column in zip(names, table.columns):
        if name == index.time.name:
            times = to_ns(column, index.time)
            out[name] = (times, bool(len(times) < 2 or (times[1:] >= times[:-1]).all()))
        else:
            out[name] = as_numpy(column)
    return out


def as_numpy(column):
    """A column as numpy: zero-copy when it is one piece without empty values; NaN for empty values."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if len(chunks) == 1 and not chunks[0].null_count and not pa.types.is_boolean(chunks[0].type):
        return chunks[0].to_numpy(zero_copy_only=True)
    if pa.types.is_integer(column.type) and column.null_count:
        column = column.cast(pa.float64())
    return column.to_numpy()
