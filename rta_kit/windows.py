"""Chunks of many whole windows at once, encoded by the store's encoders (for ``rta_kit.chunking``).

Encoding window by window (``items.window_payload``, as the store's flush
does) costs a few dozen numpy and bytes operations each, which for the ~1000
samples of a window is most of the time. Here the same encoders
(``items.periodic_list_entries``, ``TimestampedRun.list_entry_parts``) are
called once for many windows of a channel, on runs made of those windows'
items, a block of about ``BLOCK_BYTES`` of samples at a time (temporaries stay
small: in cache, and no page faults), and the result is cut back into windows.
Every item is encoded as protobuf encodes it, so each window's bytes are those
``items.window_payload`` gives it alone (tests compare the two). Windows the
batch cannot take (overlapping runs, irregular spans, an item at time 0) go
window by window through ``items.window_payload``.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from rta_core.errors import InvalidArgument
from rta_kit import items as it
from rta_kit.samples import INT64_MAX, check_time
from rta_kit.timestamped import TimestampedRun, _equal_varint_length
from rta_kit.varints import encode_varint

MAX_LIST_BYTES = 4 * 1024 * 1024  # spec §8: a list must not exceed this before compression
BLOCK_BYTES = 256 * 1024  # sample bytes encoded per call


@dataclass(slots=True)
class Chunk:
    """One chunk: ``payload`` is one serialized ``<Kind>DataList`` (uncompressed)."""

    kind: str
    channel_ids: tuple
    start: int  # time of the first sample (ns)
    end: int  # time of the last sample (ns)
    payload: bytes = field(repr=False)  # bytes-like
    samples: int = 0

    def decode(self):
        """The payload as its list message (``PeriodicDataList`` ...)."""
        message = it.LIST_TYPES[self.kind]()
        message.ParseFromString(bytes(self.payload))
        return message


def window_chunks(kind, channel, runs, grid, start, end):
    """Chunks of one channel's ``runs``, cut on ``grid``, overlapping ``[start, end]``."""
    runs = [r for r in (_restricted(kind, run, grid, start, end) for run in runs) if r is not None]
    if not runs:
        return []
    if kind == "periodic":
        chunks = _periodic_window_chunks(channel, runs, grid, start, end)
    elif len(runs) == 1:
        chunks = _timestamped_window_chunks(channel, runs[0], grid.span)
    else:
        chunks = encode_windows(kind, channel, (channel,), cut_runs(kind, runs, grid.span), start, end, grid.span)
    return [c for c in chunks if (start is None or c.end >= start) and (end is None or c.start <= end)]


def cut_runs(kind, runs, span):
    by_window = defaultdict(list)
    for run in runs:
        for window, piece in it.cut(kind, run, span):
            by_window[window].append(piece)
    return by_window


def _restricted(kind, run, grid, start, end):
    """The part of ``run`` within the whole windows ``[start, end]`` overlaps; None when nothing is."""
    if start is None and end is None:
        return run
    low, high = grid.snap(start, end)
    if run.start >= low and run.end <= high:
        return run
    if run.end < low or run.start > high:
        return None
    if kind == "periodic":
        i = max(0, -(-(low - run.start) // run.interval))
        j = min(run.samples, (high - run.start) // run.interval + 1)
    else:
        times = run.times()
        i, j = int(np.searchsorted(times, low, side="left")), int(np.searchsorted(times, high, side="right"))
    return run.piece(i, j) if i < j else None


def _item_samples(per_window):
    """Samples per item for full windows of ``per_window`` samples: the largest divisor <= 128 (None if < 64).

    Items of a size dividing the window never straddle windows, so one encoder call covers a run of whole windows.
    """
    if per_window <= it.TARGET_ITEM_SAMPLES:
        return per_window
    return next((m for m in range(it.TARGET_ITEM_SAMPLES, 63, -1) if per_window % m == 0), None)


def _periodic_window_chunks(channel, runs, grid, start, end):
    span = grid.span
    interval = max(run.interval for run in runs)
    per_window = span // interval if interval > 0 and span % interval == 0 else 0
    items = _item_samples(per_window) if per_window else None
    ordered = all(a.end < b.start for a, b in zip(runs, runs[1:]))
    if items is None or not ordered or any(r.interval != interval and r.samples > 1 for r in runs):
        # Irregular spans, overlapping runs: window by window (items of up to 128 samples).
        return encode_windows("periodic", channel, (channel,), cut_runs("periodic", runs, span), start, end, span)
    chunks, rest = [], []
    duration = (per_window - 1) * interval
    block = max(1, BLOCK_BYTES // (per_window * runs[0].width))  # windows encoded per call
    for run in runs:
        # The windows strictly inside a run hold exactly ``per_window`` of its samples and nothing else.
        first, last = run.start // span + 1, run.end // span - 1
        if first > last:
            rest.append(run)
            continue
        i = -(-(first * span - run.start) // interval)
        j = i + (last - first + 1) * per_window
        for a in range(i, j, block * per_window):
            inner = run.piece(a, min(j, a + block * per_window))
            if inner.start <= 0 <= inner.end:  # an item at time 0 encodes shorter: window by window
                rest.append(inner)
                continue
            entries = memoryview(it.periodic_list_entries(channel, inner, items))
            count = inner.samples // per_window
            size = len(entries) // count  # every item the same length: every window too
            for k in range(count):
                t = inner.start + k * span
                chunks.append(
                    Chunk("periodic", (channel,), t, t + duration, entries[k * size : (k + 1) * size], per_window)
                )
        rest += [run.piece(0, i)] if i else []
        rest += [run.piece(j, run.samples)] if j < run.samples else []
    if rest:
        chunks += encode_windows(
            "periodic", channel, (channel,), cut_runs("periodic", rest, span), start, end, span, items
        )
        chunks.sort(key=lambda c: c.start)
    return chunks


def timestamped_series_chunks(channel, times, samples, span):
    """Chunks of sorted ``times`` and their ``samples``, a block of whole windows at a time.

    Each block (about ``BLOCK_BYTES`` of samples, cut at window edges, so
    every temporary array stays small) is one run. Its scale, the unit of its
    time deltas, is the common divisor of the series' first gaps when that
    divides all of the block's gaps (checked without integer division, see
    ``_quotients``), else the block's own greatest common divisor.
    """
    n, width = len(times), samples.itemsize
    first, last = int(times[0]), int(times[-1])
    check_time(first, "timestamped data")
    check_time(last, "timestamped data")
    if last - first > INT64_MAX:
        raise InvalidArgument("timestamped data: samples span more than 2^63 ns")
    firsts = _window_firsts(times, span)
    step = max(1, BLOCK_BYTES // width)
    edges = firsts[np.unique(np.searchsorted(firsts, np.arange(0, n, step), side="right") - 1)].tolist() + [n]
    cuts = np.array(edges[1:-1], dtype=np.int64)
    if len(cuts) and (times[cuts] < times[cuts - 1]).any():
        raise InvalidArgument("timestamped data: sample times are not in order")
    usual = int(np.gcd.reduce(np.diff(times[:65]))) if n > 1 else 0
    data = memoryview(samples).cast("B")
    chunks = []
    for a, b in zip(edges, edges[1:]):
        block = times[a:b]
        deltas = np.empty(b - a, dtype=np.int64)
        deltas[0] = 0
        gaps = deltas[1:]
        np.subtract(block[1:], block[:-1], out=gaps)
        scale = 1
        if len(gaps):
            if gaps.min() < 0:
                raise InvalidArgument("timestamped data: sample times are not in order")
            quotients = _quotients(gaps, usual) if usual > 1 else None
            if quotients is None:
                scale = int(np.gcd.reduce(gaps)) or 1
                quotients = _quotients(gaps, scale)
            else:
                scale = usual
            gaps[:] = quotients
        run = TimestampedRun(int(block[0]), int(block[-1]), scale, width, deltas, data[a * width : b * width])
        inside = firsts[np.searchsorted(firsts, a) : np.searchsorted(firsts, b)] - a
        chunks += _timestamped_window_chunks(channel, run, span, block, inside)
    return chunks


def _quotients(gaps, divisor):
    """``gaps // divisor`` when ``divisor`` divides every gap (non-negative), else None.

    Through float64, which is exact here (a gap below 2^53 divided by a
    divisor of it is an integer float64 represents): several times faster than
    int64 division, which numpy cannot vectorise. Checked exactly in int64.
    """
    if divisor == 1:
        return gaps
    if len(gaps) and int(gaps.max()) >= 1 << 53:
        quotients, remainders = np.divmod(gaps, divisor)
        return None if remainders.any() else quotients
    quotients = np.rint(gaps / divisor).astype(np.int64)
    return None if (gaps - quotients * divisor).any() else quotients


def _window_firsts(times, span):
    """Index of each window's first sample in sorted ``times`` (windows holding samples only)."""
    n = len(times)
    first_window, last_window = int(times[0]) // span, int(times[-1]) // span
    if last_window - first_window < n:
        starts = np.arange(first_window + 1, last_window + 1, dtype=np.int64) * span
        firsts = np.unique(np.concatenate(([0], np.searchsorted(times, starts, side="left"))))
        return firsts[firsts < n]
    windows = np.floor_divide(times, span)  # sparse samples over many windows
    return np.concatenate(([0], np.flatnonzero(windows[1:] != windows[:-1]) + 1))


def _timestamped_window_chunks(channel, run, span, times=None, firsts=None):
    """One timestamped run's chunks: every window's full items encoded at once, then each remainder size.

    A window of ``c`` samples holds ``c // 128`` full items, then one of the
    remaining ``r`` samples. ``times`` are the run's sample times and
    ``firsts`` the index of each window's first sample, when the caller has them.
    """
    m = it.TARGET_ITEM_SAMPLES
    times = run.times() if times is None else times
    n = run.samples
    firsts = _window_firsts(times, span) if firsts is None else firsts
    counts = np.diff(np.append(firsts, n))
    # Windows of one sample count (regular data) make one table; windows at either end may differ.
    a, b = int(counts[0] != counts[len(counts) // 2]), len(counts) - int(counts[-1] != counts[len(counts) // 2])
    if b - a >= _TABLE_MIN_WINDOWS and (counts[a:b] == counts[a]).all():
        middle = _equal_windows(channel, run, times, int(firsts[a]), b - a, int(counts[a]))
        if middle is not None:
            head = _timestamped_window_chunks(channel, run.piece(0, int(firsts[a])), span) if a else []
            tail = _timestamped_window_chunks(channel, run.piece(int(firsts[b]), n), span) if b < len(counts) else []
            return head + middle + tail
    full, remainders = np.divmod(counts, m)
    values = np.frombuffer(run.data, dtype=_UNSIGNED[run.width])
    heads, tails = [None] * len(firsts), [None] * len(firsts)  # each window's full items, its last item
    windows = np.flatnonzero(full)
    if len(windows):
        pattern = np.zeros(2 * len(firsts), dtype=bool)
        pattern[0::2] = True
        lengths = np.empty(2 * len(firsts), dtype=np.int64)
        lengths[0::2], lengths[1::2] = full * m, remainders
        picked = np.repeat(pattern, lengths)  # the samples of full items
        buffer, bounds = _encode_items(channel, run, times, values, m, firsts[windows], full[windows] * m, picked)
        ends = np.cumsum(full[windows])
        for w, lo, hi in zip(windows.tolist(), bounds[ends - full[windows]].tolist(), bounds[ends].tolist()):
            heads[w] = buffer[lo:hi]
    for r in np.unique(remainders[remainders > 0]).tolist():
        windows = np.flatnonzero(remainders == r)
        starts = firsts[windows] + full[windows] * m
        picked = (starts[:, None] + np.arange(r)).ravel()
        buffer, bounds = _encode_items(channel, run, times, values, r, starts, np.full(len(windows), r), picked)
        for k, w in enumerate(windows.tolist()):
            tails[w] = buffer[bounds[k] : bounds[k + 1]]
    chunks = []
    lasts = np.append(firsts[1:], n) - 1
    timing = zip(times[firsts].tolist(), times[lasts].tolist(), counts.tolist())
    for head, tail, (first, last, count) in zip(heads, tails, timing):
        payload = (head if tail is None else tail) if head is None or tail is None else b"".join((head, tail))
        chunks.append(Chunk("timestamped", (channel,), first, last, payload, count))
    return chunks


_TABLE_MIN_WINDOWS = 2  # fewer windows of one sample count go the general way


def _equal_windows(channel, run, times, first, windows, count):
    """Chunks of ``windows`` consecutive windows of ``count`` samples each, from sample ``first`` of ``run``, as
    rows of one table, or None when their items do not all encode alike (then the general way does it).

    Each window holds ``count // 128`` full items and one of the rest, as ``_timestamped_window_chunks``
    writes them; when every delta but an item's first takes the same number of varint bytes and no item
    starts at time 0, every window encodes to the same bytes but for its times, deltas and samples. So the
    windows are the rows of one byte table, filled column by column (numpy, no Python work per window or
    item, each sample byte copied once), and each chunk's payload is a view of its row.
    """
    m, w, scale = it.TARGET_ITEM_SAMPLES, run.width, run.scale
    full, rest = divmod(count, m)
    last = first + windows * count
    deltas = run.deltas[first:last].reshape(windows, count)
    step = 1
    if count > 1:  # the deltas written: all but each window's first (contiguous, faster, if that is enough)
        step = _equal_varint_length(run.deltas[first + 1 : last]) or _equal_varint_length(deltas[:, 1:])
        if step is None:
            return None
    stamps = times[first:last].reshape(windows, count)
    values = np.frombuffer(run.data, dtype=np.uint8)[first * w : last * w].reshape(windows, count * w)
    head = b"\x08" + encode_varint(channel) if channel else b""
    shapes = [(full, m)] * bool(full) + [(1, rest)] * bool(rest)  # (items per window, samples per item)
    layouts = []
    for items, size in shapes:
        delta_bytes = 1 + (size - 1) * step
        middle = b"\x18" + encode_varint(scale) + b"\x22" + encode_varint(delta_bytes) + b"\x00"
        buffer_header = b"\x2a" + encode_varint(size * w)
        body = len(head) + 9 + len(middle) + delta_bytes - 1 + len(buffer_header) + size * w
        lead = b"\x0a" + encode_varint(body) + head + b"\x11"
        layouts.append((items, size, lead, middle, buffer_header, (len(lead), 8, len(middle), (size - 1) * step)))
    row = sum(
        items * (len(lead) + 8 + len(middle) + (size - 1) * step + len(bh) + size * w)
        for items, size, lead, middle, bh, _ in layouts
    )
    out = np.empty(windows * row, dtype=np.uint8)
    table = out.reshape(windows, row)
    at, sample = 0, 0  # where this shape's items start in a row, and their first sample in a window
    for items, size, lead, middle, buffer_header, widths in layouts:
        starts = stamps[:, sample : sample + items * size : size]
        if not starts.all():
            return None  # an item at time 0 leaves its time field out
        width = sum(widths) + len(buffer_header) + size * w
        cells = table[:, at : at + items * width].reshape(windows, items, width)
        edges = list(accumulate(widths, initial=0))
        cells[:, :, : edges[1]] = np.frombuffer(lead, dtype=np.uint8)
        cells[:, :, edges[1] : edges[2]] = np.ascontiguousarray(starts, "<i8").view(np.uint8).reshape(windows, items, 8)
        cells[:, :, edges[2] : edges[3]] = np.frombuffer(middle, dtype=np.uint8)
        if size > 1:
            inner = deltas[:, sample : sample + items * size].reshape(windows, items, size)[:, :, 1:]
            groups = cells[:, :, edges[3] : edges[4]].reshape(windows, items, size - 1, step)
            for k in range(step):  # the deltas' varints, byte by byte, each written in one pass (cast to uint8)
                shifted = inner >> (7 * k) if k else inner
                if k < step - 1:
                    np.bitwise_or(shifted, 0x80, out=groups[:, :, :, k], casting="unsafe")
                else:
                    np.copyto(groups[:, :, :, k], shifted, casting="unsafe")
        cells[:, :, edges[4] : edges[4] + len(buffer_header)] = np.frombuffer(buffer_header, dtype=np.uint8)
        cells[:, :, edges[4] + len(buffer_header) :] = values[:, sample * w : (sample + items * size) * w].reshape(
            windows, items, size * w
        )
        at += items * width
        sample += items * size
    view = memoryview(out)
    timing = zip(stamps[:, 0].tolist(), stamps[:, -1].tolist())
    return [
        Chunk("timestamped", (channel,), t0, t1, view[k * row : (k + 1) * row], count)
        for k, (t0, t1) in enumerate(timing)
    ]


def _encode_items(channel, run, times, values, size, starts, lengths, picked):
    """Items of ``size`` samples from the runs of ``lengths`` samples at ``starts`` (``picked``: those samples).

    One ``TimestampedRun`` of the picked samples, encoded by the store's
    encoder; returns its entries (a byte view) and where each item starts
    (and the end), as an int64 array.
    """
    deltas = run.deltas[picked]  # the run's deltas, but where a run of samples follows another
    joins = np.cumsum(lengths)[:-1]
    deltas[joins] = (times[starts[1:]] - times[starts[:-1] + lengths[:-1] - 1]) // run.scale
    deltas[0] = 0
    first, last = int(times[starts[0]]), int(times[starts[-1] + lengths[-1] - 1])
    items = TimestampedRun(first, last, run.scale, run.width, deltas, memoryview(values[picked]).cast("B"))
    encoded = items.list_entry_parts(channel, size)
    buffer = memoryview(encoded[0] if len(encoded) == 1 else b"".join(encoded)).cast("B")
    return buffer, _entry_bounds(buffer, int(lengths.sum()) // size, len(encoded) == 1)


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _entry_bounds(buffer, count, equal):
    """Where each of ``count`` consecutive list entries (field 1, length-delimited) starts, and the end."""
    if equal and len(buffer) % count == 0:
        return np.arange(0, len(buffer) + 1, len(buffer) // count)
    bounds, pos = [0], 0
    for _ in range(count):
        pos += 1  # the tag
        size = shift = 0
        while True:
            byte = buffer[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        pos += size
        bounds.append(pos)
    return np.array(bounds, dtype=np.int64)


def encode_windows(kind, key, channel_ids, by_window, start, end, span=None, max_samples=it.TARGET_ITEM_SAMPLES):
    out = []
    for window in sorted(by_window):
        if span and ((start is not None and window + span <= start) or (end is not None and window > end)):
            continue  # a window outside the request: not worth encoding
        payload, first, last, samples = it.window_payload(kind, key, by_window[window], max_samples)
        if (start is not None and last < start) or (end is not None and first > end):
            continue
        if len(payload) > MAX_LIST_BYTES:
            raise ValueError(
                f"a {kind} chunk of {len(payload)} bytes passes the 4 MiB limit of a list: use a grid of shorter spans"
            )
        out.append(Chunk(kind, channel_ids, first, last, payload, samples))
    return out
