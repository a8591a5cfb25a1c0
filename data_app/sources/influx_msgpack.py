"""InfluxDB's MessagePack answers (``Accept: application/x-msgpack``, InfluxDB 1.4+) read into numpy columns.

Why MessagePack: InfluxDB sends a float as 9 bytes instead of formatting it
as text (CSV costs InfluxDB itself ~1.5x the CPU per value here), and the
rows of a series whose fields are all present floats have one fixed layout
(array header, 8-byte integer time, ``k`` × ``float64``), so whole runs of
rows are checked and decoded as one numpy array instead of one object per
value. Anything else (an absent field's ``nil``, integer or boolean fields, a
small time) is decoded row by row by the ``msgpack`` library, from the first
row that does not fit.

The envelope (``{"results": [{"statement_id", "series": [{"name", "columns",
"values"}], "partial"}]}``, one document per chunk of a chunked answer) is
walked with ``msgpack.Unpacker`` a header at a time; the answer is read as it
arrives and a document is dropped once read, so memory stays about one chunk.
"""

import msgpack
import numpy as np

from data_app.sources.influx_query import QueryFailed

HEAD_BYTES = 1 << 16  # bytes fed to an Unpacker reading one header or small object
RECHECK_ROWS = 64  # rows decoded one by one before looking for a fixed-layout run again
FIXARRAY, ARRAY16, FLOAT64 = 0x90, 0xDC, 0xCB
TIME_MARKERS = (0xD3, 0xCF)  # int64 (InfluxDB's), uint64 (other writers' positive times): same 8 bytes


def read_msgpack(pieces, types):
    """``(times, {field: values})`` of a MessagePack answer arriving as byte ``pieces`` (see the module doc).

    ``types``: ``{field: InfluxDB type}`` of the fields selected. NaN where a field is absent; booleans as
    0/1 (``uint8`` when never absent); integers as f64. ``QueryFailed`` for an error answer or bytes that
    are not one.
    """
    answer = _Answer(_Buffer(pieces))
    try:
        answer.read()
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise QueryFailed() from exc
    return answer.columns(types)


class _Buffer:
    """The answer's bytes with a read position; more are taken from ``pieces`` as a read needs them."""

    def __init__(self, pieces):
        self._pieces, self.data, self.pos = iter(pieces), bytearray(), 0

    def more(self):
        """Take the next piece (dropping what was read); False at the end of the answer."""
        if self.pos > (1 << 20) and self.pos * 2 > len(self.data):
            del self.data[: self.pos]
            self.pos = 0
        for piece in self._pieces:
            if piece:
                self.data += piece
                return True
        return False

    def need(self, size):
        """Whether ``size`` bytes from the position are here (taking pieces until they are or the end)."""
        while len(self.data) - self.pos < size:
            if not self.more():
                return False
        return True

    def at_end(self):
        return not self.need(1)

    def call(self, method):
        """``Unpacker.<method>()`` at the position (an object or a header), advancing past it."""
        window = HEAD_BYTES
        while True:
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
            unpacker.feed(memoryview(self.data)[self.pos : self.pos + window])
            try:
                value = getattr(unpacker, method)()
            except msgpack.OutOfData:
                if len(self.data) - self.pos > window:
                    window *= 4
                elif not self.more():
                    raise ValueError("the answer ends inside an object") from None
                continue
            self.pos += unpacker.tell()
            return value


class _Answer:
    """Walks the documents of an answer, gathering each series' rows as column arrays."""

    def __init__(self, buffer):
        self.buffer = buffer
        self.times, self.values, self.count = [], {}, 0  # [int64 arrays], {field: [arrays]}, rows

    def read(self):
        while not self.buffer.at_end():
            self._map("results", self._result)  # a document: one chunk of the answer

    def _result(self):
        self._map("series", self._series)

    def _map(self, list_key, each):
        """A map whose ``list_key`` is an array of what ``each`` reads; an ``error`` key fails the query."""
        b = self.buffer
        for _ in range(b.call("read_map_header")):
            key = b.call("unpack")
            if key == list_key:
                for _ in range(b.call("read_array_header")):
                    each()
            elif key == "error":
                raise QueryFailed()
            else:
                b.call("skip")

    def _series(self):
        b, columns = self.buffer, None
        for _ in range(b.call("read_map_header")):
            key = b.call("unpack")
            if key == "columns":
                columns = [str(c) for c in b.call("unpack")]
            elif key == "values":
                if not columns or columns[0] != "time":
                    raise QueryFailed()  # InfluxDB writes the columns first, time first
                self._rows(columns, b.call("read_array_header"))
            else:
                b.call("skip")

    def _rows(self, columns, count):
        """``count`` rows of ``columns`` at the position: fixed-layout runs by numpy, the rest row by row."""
        layout, width = _float_rows(len(columns) - 1), len(columns)
        while count:
            fitting = self._fitting_rows(layout, width, count)
            if fitting:
                b = self.buffer
                rows = np.frombuffer(b.data, layout, fitting, b.pos)
                values = [rows[f"v{i}"].astype(np.float64) for i in range(1, width)]
                times = rows["t"].astype(np.int64)
                del rows  # a view of the buffer, which cannot grow while it lives
                self._add(columns, times, values)
                b.pos += fitting * layout.itemsize
                count -= fitting
            if count:
                count -= self._generic_rows(columns, layout, count)

    def _fitting_rows(self, layout, width, count):
        """How many of the next ``count`` rows have the fixed float layout (0 when the first does not)."""
        b, size = self.buffer, layout.itemsize
        available = count if b.need(count * size) else (len(b.data) - b.pos) // size
        if not available:
            return 0
        rows = np.frombuffer(b.data, layout, available, b.pos)
        if width < 16:
            fits = (rows["a"] == FIXARRAY + width) & np.isin(rows["m0"], TIME_MARKERS)
        else:
            fits = (rows["a"] == ARRAY16) & (rows["n"] == width) & np.isin(rows["m0"], TIME_MARKERS)
        for i in range(1, width):
            fits &= rows[f"m{i}"] == FLOAT64
        del rows
        misfits = np.flatnonzero(~fits)
        return available if not len(misfits) else int(misfits[0])

    def _generic_rows(self, columns, layout, count):
        """Rows decoded by ``msgpack``, at most ``count``, until a run of fixed-layout rows may start again."""
        b, rows = self.buffer, []
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)
        fed = 0  # bytes fed, from the position (``more`` may move what was read away, not the position's bytes)
        while len(rows) < count:
            if len(rows) % RECHECK_ROWS == 0 and rows and self._fits_at(layout, len(columns), unpacker.tell()):
                break
            try:
                row = unpacker.unpack()
            except msgpack.OutOfData:
                # Fed a window at a time: these rows may be a few between long runs of a large buffer.
                if b.pos + fed >= len(b.data) and not b.more():
                    raise ValueError("the answer ends inside a row") from None
                window = memoryview(b.data)[b.pos + fed : b.pos + fed + HEAD_BYTES]
                unpacker.feed(window)
                fed += len(window)
                del window
                continue
            if not isinstance(row, list) or len(row) != len(columns):
                raise ValueError("a row that is not one value per column")
            rows.append(row)
        b.pos += unpacker.tell()
        times = np.array([r[0] for r in rows], dtype=np.int64)
        self._add(columns, times, [_column([r[i] for r in rows]) for i in range(1, len(columns))])
        return len(rows)

    def _fits_at(self, layout, width, offset):
        """Whether the row ``offset`` bytes on is here and has the fixed layout."""
        data, at = self.buffer.data, self.buffer.pos + offset
        if len(data) - at < layout.itemsize:
            return False
        head = 1 if width < 16 else 3
        if data[at] != (FIXARRAY + width if width < 16 else ARRAY16) or data[at + head] not in TIME_MARKERS:
            return False
        if width >= 16 and int.from_bytes(data[at + 1 : at + 3], "big") != width:
            return False
        return all(data[at + head + 9 * i] == FLOAT64 for i in range(1, width))

    def _add(self, columns, times, values):
        for name, column in zip(columns[1:], values):
            pieces = self.values.setdefault(name, [])
            known = sum(len(p) for p in pieces)
            if known < self.count:  # a column this answer's earlier series did not have: absent there
                pieces.append(np.full(self.count - known, np.nan))
            pieces.append(column)
        self.times.append(times)
        self.count += len(times)

    def columns(self, types):
        if not self.times:
            return np.empty(0, np.int64), {}
        times, out = np.concatenate(self.times), {}
        for name, pieces in self.values.items():
            if name not in types:
                continue
            known = sum(len(p) for p in pieces)
            if known < self.count:
                pieces.append(np.full(self.count - known, np.nan))
            column = np.concatenate(pieces)
            if types[name] == "boolean" and not np.isnan(column).any():
                column = column.astype(np.uint8)
            out[name] = column
        return times, out


def _float_rows(fields):
    """The fixed layout of a row of a time and ``fields`` floats (an array of up to 15 has a 1-byte header)."""
    layout = [("a", "u1")] if fields < 15 else [("a", "u1"), ("n", ">u2")]
    layout += [("m0", "u1"), ("t", ">i8")]
    layout += [item for i in range(1, fields + 1) for item in ((f"m{i}", "u1"), (f"v{i}", ">f8"))]
    return np.dtype(layout)


def _column(values):
    """f64 of a column's values: None (absent) as NaN, booleans as 0/1."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
