"""Parquet files served in place (``RTA_PARQUET_ROOT``, source ``RTA_PARQUET_SOURCE``, default ``parquet``).

The identity is a file or a folder under the root (relative, or absolute with
the root's path as prefix). A folder's Parquet files, in time order, serve as
one series: files sharing columns are read together (a file per hour, say),
files with columns of their own (a file per rate) are separate groups. Every
numeric column but the time column is a field; the time column is the mapping
property ``time_column`` (default: the first timestamp column, else ``time``)
in ``time_unit`` (``ns`` default, ``us``, ``ms``, ``s``; timestamp columns
carry their own unit).

A read opens the files it needs (safely: ``parquet_files``), keeps only the
row groups whose time statistics overlap the request, and reads only the
time column and the requested fields, into numpy without copies where the
column allows (one piece, no empty values).
"""

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from data_app.sources import parquet_files as files
from data_app.sources.series import SeriesSource, StoreField

SETTINGS = ("RTA_PARQUET_ROOT", "RTA_PARQUET_SOURCE")
log = logging.getLogger(__name__)


def from_settings(settings):
    root = getattr(settings, "RTA_PARQUET_ROOT", "")
    if not root:
        return []
    return [ParquetSource(getattr(settings, "RTA_PARQUET_SOURCE", "") or "parquet", root)]


class ParquetSource(SeriesSource):
    def __init__(self, name, root):
        self.name = name
        self.root = str(Path(root).resolve())
        self.cache = files.IndexCache()
        self.columns = files.ColumnCache()

    # --- the series contract ---

    def store_fields(self, identity, mapping):
        with self._opened(identity, mapping) as found:
            return [StoreField(name, group) for group, names in groups(found) for name in names]

    def time_range(self, identity, mapping, group):
        with self._opened(identity, mapping) as found:
            extents = [f.index.extent for f in found if _in_group(f, group)]
        extents = [e for e in extents if e is not None]
        if not extents:
            return None
        return min(e[0] for e in extents), max(e[1] for e in extents)

    def read(self, identity, mapping, group, names, low, high):
        pieces = []
        with self._opened(identity, mapping) as found:
            for f in found:
                row_groups = f.index.row_groups(low, high) if _in_group(f, group) else []
                if row_groups:
                    pieces += _read_file(f, row_groups, names, low, high, self.columns)
        return _joined(pieces, names)

    def check(self):
        try:
            with os.scandir(self.root) as entries:
                next(entries, None)
        except OSError:
            raise OSError("the Parquet root is not a readable folder") from None  # its path is not shown

    # --- files ---

    def opened(self, identity, mapping):
        """The files of ``identity`` (``Found``, time order), open in a ``with`` block: for the indexer."""
        return self._opened(identity, mapping)

    def row_group(self, found, row_group, names):
        """The ``parquet_files.RowGroup`` of one row group of a ``Found`` file with the ``names`` columns."""
        return self.columns.columns(found.opened, found.index, row_group, names)

    @contextmanager
    def _opened(self, identity, mapping):
        """``[Found]`` of ``identity`` in time order, open while in the block (NotFound: refused or no file)."""
        parts = files.relative_parts(self.root, identity)
        time_name, time_unit = mapping.property("time_column"), mapping.property("time_unit")
        opened = files.open_under(self.root, parts)
        if opened.is_dir:
            with opened:
                listed = files.folder_files(opened)
        elif parts[-1].endswith(files.SUFFIXES):
            listed = [(parts[-1], opened)]
        else:
            opened.close()
            raise files.refused()
        try:
            found = []
            for name, child in listed:
                index = self._index(child, time_name, time_unit, skip_broken=opened.is_dir)
                if index is not None:
                    found.append(Found(name, child, index))
            if not found:
                raise files.refused()
            found.sort(key=lambda f: ((f.index.extent or (0, 0))[0], f.name))
            yield found
        finally:
            for _, child in listed:
                child.close()

    def _index(self, opened, time_name, time_unit, skip_broken=False):
        """The file's ``FileIndex``; a broken file fails the read, or is skipped (None) in a folder.

        A folder's series goes on being served while one of its files is being written or is damaged.
        """
        try:
            return self.cache.get(opened, time_name, time_unit)
        except files.BrokenFile:
            if skip_broken:
                log.warning("data source %r: a Parquet file of a folder cannot be read and is skipped", self.name)
                return None
            raise ValueError("a Parquet file of this source cannot be read") from None


class Found:
    """One open Parquet file of an identity: its name, descriptor, ``FileIndex`` and numeric fields."""

    def __init__(self, name, opened, index):
        self.name, self.opened, self.index = name, opened, index
        self.fields = tuple(f.name for f in index.value_fields())


def _read_file(found, row_groups, names, low, high, cache):
    """``[(times, ascending, {name: values})]``: the rows in ``[low, high]`` of each of ``row_groups``."""
    index = found.index
    wanted = [n for n in names if n in found.fields]
    pieces = []
    for row_group in row_groups:
        decoded = cache.columns(found.opened, index, row_group, wanted)
        keep = _within(decoded.times, decoded.ascending, low, high)
        if keep is None:
            pieces.append((decoded.times, decoded.ascending, decoded.columns))
        else:
            columns = {n: v[keep] for n, v in decoded.columns.items()}
            pieces.append((decoded.times[keep], decoded.ascending, columns))
    return pieces


def groups(found):
    """``[(group, [field names])]``: files sharing a column are one group (their union of columns).

    Groups and names keep the order they first appear in (files in time order).
    """
    groups = []  # [set of names, [names in order]]
    for f in found:
        names = set(f.fields)
        if not names:
            continue
        touching = [i for i, g in enumerate(groups) if g[0] & names]
        merged = [set(names), []]
        for i in touching:
            merged[0] |= groups[i][0]
            merged[1] += groups[i][1]
        merged[1] += [n for n in f.fields if n not in merged[1]]
        at = touching[0] if touching else len(groups)
        groups = [g for i, g in enumerate(groups) if i not in touching]
        groups.insert(at, merged)
    return [(tuple(sorted(names)), ordered) for names, ordered in groups]


def _in_group(found, group):
    return group is None or bool(set(found.fields) & set(group))


def _within(times, ascending, low, high):
    """A slice (or mask) of ``times`` inside ``[low, high]``; None when all are."""
    if not len(times) or (ascending and times[0] >= low and times[-1] <= high):
        return None
    if ascending:
        return slice(int(np.searchsorted(times, low, "left")), int(np.searchsorted(times, high, "right")))
    return (times >= low) & (times <= high)


def _joined(pieces, names):
    """One ``(times, {name: values})`` of ``(times, ascending, columns)`` pieces, in time order.

    NaN where a piece lacks a field; one piece in order is passed on as it is (no copy).
    """
    pieces = [p for p in pieces if len(p[0])]
    if not pieces:
        return np.empty(0, np.int64), {}
    if len(pieces) == 1 and pieces[0][1]:
        return pieces[0][0], pieces[0][2]
    ordered = all(p[1] for p in pieces) and all(a[0][-1] <= b[0][0] for a, b in zip(pieces, pieces[1:]))
    times = np.concatenate([t for t, _, _ in pieces])
    columns = {}
    for name in names:
        if not any(name in c for _, _, c in pieces):
            continue
        parts = [c[name] if name in c else np.full(len(t), np.nan) for t, _, c in pieces]
        columns[name] = np.concatenate(parts)
    if not ordered:
        order = np.argsort(times, kind="stable")
        times = times[order]
        columns = {name: values[order] for name, values in columns.items()}
    return times, columns
