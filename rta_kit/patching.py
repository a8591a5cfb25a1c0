"""A data binding's time offset and channel re-mapping written straight into a serialized list.

An offset moves one fixed-width field per item: ``start_timestamp`` (field 2,
sfixed64) of periodic and timestamped data, ``timestamp`` of row data (field
2) and of events (field 3). So a chunk's list is shifted by adding the offset
to 8 bytes per item where they lie, with no protobuf parse and no
re-serialisation; re-mapping replaces each item's leading channel field
(``channel_id``, or row data's packed ``channel_ids``).

``scan`` walks the list's entries and returns them as ``Group``s of consecutive
entries with one layout: the store writes a run's full items with equal
lengths, so a 20,000-sample chunk is typically two groups (the full 128-sample
items and the remainder). After one entry is walked field by field, the rows
of the same length that follow it are compared with it at every byte that
is not a time or the content of a length-delimited field (numpy, all rows at
once): a row equal there has the same fields at the same places.

Anything out of the ordinary makes ``scan`` return None and the caller take
protobuf's way: an unknown field or wire type, fields out of field-number
order (as protobuf writes them), a missing time (a time of 0 is left out of
the wire format), a truncated entry, and entries that are each laid out
differently (events with texts of different lengths: protobuf parses those
faster than Python walks them). ``shifted`` returns None as well when a new
time would overflow int64 (protobuf's way raises) or be 0 (protobuf would
leave the field out). So a patched list is byte for byte what protobuf would
write for every list protobuf itself wrote. The contents of length-delimited
fields (sample buffers, texts, packed deltas) are not looked at, as they are
not when a chunk goes out as stored.
"""

import struct
from typing import NamedTuple

import lz4.block
import numpy as np

from rta_kit.varints import encode_varint

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
COMPRESSION_NONE, COMPRESSION_LZ4 = 0, 1  # as in ``rta_kit.wire``

TIME_FIELDS = {"periodic": 2, "timestamped": 2, "row": 2, "events": 3}
# The wire type of each field of each item message (data.proto); packed repeated fields are 2.
WIRE_TYPES = {
    "periodic": {1: 0, 2: 1, 3: 0, 4: 0, 5: 2},
    "timestamped": {1: 0, 2: 1, 3: 0, 4: 2, 5: 2},
    "row": {1: 2, 2: 1, 3: 2},
    "events": {1: 0, 2: 2, 3: 1, 4: 2, 5: 2},
}


class Layout(NamedTuple):
    """Where the fields of a list entry are; offsets from its tag.

    ``time`` is the 8-byte time, ``body`` the first field, ``lead`` the end of
    field 1 (``body`` when the entry has none). ``ranges`` are the byte ranges
    that say where every field is (tags, varints, lengths, fixed-width values
    but the time) and ``fixed`` the entry's bytes there: an entry equal to it
    there has this layout, and the same ``varints`` (field number: value as
    unsigned 64-bit) too. ``contents`` are where the length-delimited fields'
    contents lie (field number: ``(from, to)``).
    """

    size: int
    time: int
    body: int
    lead: int
    ranges: tuple
    fixed: tuple
    varints: dict
    contents: dict


class Group(NamedTuple):
    """``count`` consecutive list entries from ``start`` with one ``Layout``."""

    start: int
    count: int
    layout: Layout


def unpacked(packed, unpacked_length, compression):
    """A chunk's list as a bytearray of its own (``shifted`` writes into it)."""
    if compression == COMPRESSION_LZ4:
        if unpacked_length == 0:
            return bytearray()
        return lz4.block.decompress(packed, uncompressed_size=unpacked_length, return_bytearray=True)
    if compression == COMPRESSION_NONE:
        return bytearray(packed)
    raise ValueError(f"unknown compression {compression}")


def _varint(data, pos, end):
    """``(value, next position)`` of the varint at ``pos``, or ``(None, pos)`` when it runs past ``end``."""
    value, shift = 0, 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None, pos


def _entry(data, pos, end, types, time_field):
    """The ``Layout`` of the entry at ``pos`` (walked field by field), or None when not in the expected layout."""
    if data[pos] != 0x0A:
        return None
    length, body = _varint(data, pos + 1, end)
    if length is None or body + length > end:
        return None
    stop = body + length
    ranges = [(0, body - pos)]
    p, last_field, time, lead, varints, contents = body, 0, None, body, {}, {}
    while p < stop:
        tag = data[p]
        field, wire_type = tag >> 3, tag & 7
        if tag >= 0x80 or field <= last_field or types.get(field) != wire_type:
            return None
        last_field = field
        if wire_type == 0:
            value, q = _varint(data, p + 1, stop)
            if value is None:
                return None
            ranges.append((p - pos, q - pos))
            varints[field] = value
        elif wire_type == 1:
            q = p + 9
            if field == time_field:
                time = p + 1
                ranges.append((p - pos, p + 1 - pos))
            else:
                ranges.append((p - pos, q - pos))
        else:
            size, q = _varint(data, p + 1, stop)
            if size is None:
                return None
            ranges.append((p - pos, q - pos))
            contents[field] = (q - pos, q + size - pos)
            q += size
        if q > stop:
            return None
        if field == 1:
            lead = q
        p = q
    if time is None:
        return None
    ranges = _merged(ranges)
    fixed = tuple(bytes(data[pos + a : pos + b]) for a, b in ranges)
    return Layout(stop - pos, time - pos, body - pos, lead - pos, ranges, fixed, varints, contents)


# Layouts seen lately, by kind and first bytes: chunks of one channel repeat a few layouts, and
# comparing an entry with a known layout's fixed bytes is much cheaper than walking it.
_LAYOUTS = {}
_LAYOUTS_MAX = 1024


def _layout(data, pos, end, kind):
    key = (kind, bytes(data[pos : pos + 3]))
    for layout in _LAYOUTS.get(key, ()):
        if pos + layout.size <= end and _matches(data, pos, layout):
            return layout
    layout = _entry(data, pos, end, WIRE_TYPES[kind], TIME_FIELDS[kind])
    if layout is not None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        known = _LAYOUTS.setdefault(key, [])  # (threads share the cache: one list, whatever another one clears)
        known.insert(0, layout)
        del known[4:]
    return layout


def _matches(data, pos, layout):
    for (a, b), fixed in zip(layout.ranges, layout.fixed):
        if data[pos + a : pos + b] != fixed:
            return False
    return True


# Entries in a row that are each laid out differently (events with texts of different lengths, short
# bursts): walking them one by one in Python is slower than protobuf's parse, so ``scan`` gives up.
_SINGLES_MAX = 2


def scan(kind, data):
    """The entries of the serialized list ``data`` as ``Group``s in order, or None (see the module docstring)."""
    pos, end, groups, singles = 0, len(data), [], 0
    while pos < end:
        layout = _layout(data, pos, end, kind)
        if layout is None:
            return None
        count, size = 1, layout.size
        (a, b), first = layout.ranges[0], layout.fixed[0]
        # A cheap look at the next entry's first bytes before comparing every row that follows.
        if end - pos >= 2 * size and data[pos + size + a : pos + size + b] == first:
            count = _alike(data, pos, (end - pos) // size, layout)
        singles = singles + 1 if count == 1 else 0
        if singles > _SINGLES_MAX:
            return None
        groups.append(Group(pos, count, layout))
        pos += count * size
    return groups


def _alike(data, pos, rows, layout):
    """How many of the ``rows`` entries from ``pos`` (``layout.size`` bytes each) have ``layout``.

    Each of the layout's ranges of every row is copied out in one numpy call
    (a strided view) and compared with the layout's bytes repeated; the rows
    alike are those before the first one that differs.
    """
    count, size = rows, layout.size
    for (a, b), fixed in zip(layout.ranges, layout.fixed):
        width = b - a
        view = np.ndarray((count, width), dtype=np.uint8, buffer=data, offset=pos + a, strides=(size, 1))
        if view.tobytes() != fixed * count:
            count = int((view != np.frombuffer(fixed, dtype=np.uint8)).any(axis=1).argmax())
            if count <= 1:
                return 1
    return count


def _merged(ranges):
    out = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


_TIME = struct.Struct("<q")
_INT64 = np.dtype("<i8")
_VIEW_MIN = 16  # groups of at least this many entries are patched through a numpy view, smaller ones one by one


def times(data, group):
    """The times of ``group``'s entries, as a new int64 array."""
    start, count, layout = group
    return np.ndarray((count,), dtype=_INT64, buffer=data, offset=start + layout.time, strides=(layout.size,)).copy()


def delta_sums(data, group):
    """``(first, total)``: each entry's first delta and the sum of its deltas (timestamped), as int64 arrays.

    The deltas' varints are decoded for every entry of the group at once: each
    byte's 7 bits shifted by its place in its varint. None unless every entry
    has deltas and every delta is below 2^49 (negative ones take ten bytes):
    sums then fit int64 whatever their number.
    """
    start, count, layout = group
    if 4 not in layout.contents:
        return None
    a, b = layout.contents[4]
    width = b - a
    if not width:
        return None
    rows = np.ndarray((count, width), dtype=np.uint8, buffer=data, offset=start + a, strides=(layout.size, 1))
    ends = rows < 0x80
    if (ends == ends[0]).all():
        # Every entry's varints end at the same places (the store's equal items): work out the places once.
        pattern = _varint_places(ends[0])
        if pattern is None:
            return None
        place, leading = pattern
        values = (rows & 0x7F).astype(np.int64) << place
        return values[:, :leading].sum(axis=1), values.sum(axis=1)
    flat = ends.reshape(-1)
    pattern = _varint_places(flat)
    if pattern is None or not ends[:, -1].all():
        return None
    place, _ = pattern
    values = ((rows.reshape(-1) & 0x7F).astype(np.int64) << place).reshape(count, width)
    begins = np.empty(len(flat), dtype=bool)
    begins[0] = True
    begins[1:] = flat[:-1]
    first = np.where(np.cumsum(begins.reshape(count, width), axis=1) == 1, values, 0).sum(axis=1)
    return first, values.sum(axis=1)


def _varint_places(ends):
    """Each byte's place in its varint (``7 * index``) from where varints end, and the first varint's length.

    None when the last varint does not end or one is 7 bytes long or more.
    """
    if not ends[-1]:
        return None
    begins = np.empty(len(ends), dtype=bool)
    begins[0] = True
    begins[1:] = ends[:-1]
    index = np.arange(len(ends))
    place = index - np.maximum.accumulate(np.where(begins, index, 0))
    if int(place.max()) >= 7:
        return None
    return 7 * place, int(ends.argmax()) + 1


def signed(value, bits=64):
    """A varint's value read as a signed ``bits``-bit integer (protobuf's int64/int32)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _shift_times(data, groups, offset):
    """Add ``offset`` to every time in place; False (nothing written) on overflow or a new time of 0."""
    unpack, pack = _TIME.unpack_from, _TIME.pack_into
    views, singles, low, high = [], [], INT64_MAX, INT64_MIN
    for start, count, layout in groups:
        first, size = start + layout.time, layout.size
        if count >= _VIEW_MIN:
            view = np.ndarray((count,), dtype=_INT64, buffer=data, offset=first, strides=(size,))
            ordered = view.copy()
            ordered.sort()  # cheaper than min() and max() for short, sorted arrays
            views.append((view, ordered))
            low, high = min(low, int(ordered[0])), max(high, int(ordered[-1]))
        else:
            for place in range(first, first + count * size, size):
                (time,) = unpack(data, place)
                singles.append((place, time))
                low, high = min(low, time), max(high, time)
    if low + offset < INT64_MIN or high + offset > INT64_MAX:
        return False
    if low <= -offset <= high and (
        any(time == -offset for _, time in singles) or any(_holds(ordered, -offset) for _, ordered in views)
    ):
        return False
    for view, _ in views:
        view[...] = view + offset
    for place, time in singles:
        pack(data, place, time + offset)
    return True


def _holds(ordered, value):
    i = int(ordered.searchsorted(value))
    return i < len(ordered) and int(ordered[i]) == value


def channel_field(kind, channel_ids):
    """The leading field an item served as ``channel_ids`` has (protobuf's encoding), or None (events)."""
    if kind in ("periodic", "timestamped"):
        channel = channel_ids[0]
        return b"\x08" + encode_varint(channel) if channel else b""
    if kind == "row":
        packed = b"".join(encode_varint(c) for c in channel_ids)
        return b"\x0a" + encode_varint(len(packed)) + packed if packed else b""
    return None


def _remapped(data, groups, lead):
    """``data`` with every entry's field 1 replaced by ``lead`` (in place when its length is unchanged)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    new = np.frombuffer(lead, dtype=np.uint8)
    if all(layout.lead - layout.body == len(lead) for _, _, layout in groups):
        for start, count, layout in groups:
            rows = raw[start : start + count * layout.size].reshape(count, layout.size)
            rows[:, layout.body : layout.lead] = new
        return data
    # Field 1 changes length, so does each entry and its length prefix: entries are copied into rows of the new size.
    heads = [b"\x0a" + encode_varint(len(lead) + layout.size - layout.lead) + lead for _, _, layout in groups]
    widths = [len(head) + layout.size - layout.lead for head, (_, _, layout) in zip(heads, groups)]
    out = np.empty(sum(width * count for width, (_, count, _) in zip(widths, groups)), dtype=np.uint8)
    pos = 0
    for head, width, (start, count, layout) in zip(heads, widths, groups):
        rows = out[pos : pos + count * width].reshape(count, width)
        rows[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
        rows[:, len(head) :] = raw[start : start + count * layout.size].reshape(count, layout.size)[:, layout.lead :]
        pos += count * width
    return out.data


def shifted(kind, data, offset, channel_ids=None):
    """``data`` (a serialized list) with ``offset`` added to every time and items served as ``channel_ids``.

    ``data`` is written into when it is a bytearray (the caller's own buffer,
    e.g. from ``unpacked``), else copied first. Returns a bytes-like object,
    or None when the list is not in a layout this module rewrites (then
    nothing was written): the caller then takes protobuf's way.
    """
    lead = channel_field(kind, channel_ids) if channel_ids is not None else None
    if not offset and lead is None:
        return data
    if not INT64_MIN <= offset <= INT64_MAX:
        return None
    if not isinstance(data, bytearray):
        data = bytearray(data)
    if not data:
        return data
    groups = scan(kind, data)
    if groups is None:
        return None
    if offset and not _shift_times(data, groups, offset):
        return None
    return data if lead is None else _remapped(data, groups, lead)
