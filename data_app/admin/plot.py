"""A server-side SVG picture of a session's channels: one small panel per channel, time across.

Downsampling keeps the picture exact at its resolution while bounding the
work: each panel is split into one time bucket per pixel column, and each
bucket keeps its first, last, minimum and maximum sample (the "M4"
aggregation), so a single-sample spike still reaches its value and the line
joins neighbouring columns as a full-resolution plot would. A panel never
holds more than four points per pixel column, whatever the session length.

Chunks are read and decoded one at a time, in time order, into the buckets.
The work is bounded by ``RTA_ADMIN_PLOT_MAX_SAMPLES`` (samples decoded per
picture, shared by its channels): when a channel holds more, only every
k-th chunk is read, spread over the whole range, and its line breaks over
the chunks left out (the panel says so). Periodic and timestamped channels
are plotted; row data and events are only counted (see ``summary``).

Values are raw unless the bound config gives the channel a linear rational
conversion, in which case they are in its engineering unit. The sample type
comes from the config (``s16``, ``f64``...) or, without one, from the sample
width (1: u8, 2: s16, 4: f32, 8: f64).
"""

import math
import re
import sys
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate

from django.conf import settings
from django.utils.html import escape

from data_app.admin import composed
from data_app.admin.summary import data_summary
from data_app.models import Chunk
from data_app.store.segments import SegmentReader
from rta_core.errors import InvalidArgument
from rta_core.timeutil import NS_PER_S, format_duration, ns_to_datetime, tick_step
from rta_kit import wire
from sessions_app.models import Marker
from sessions_app.services.values import LAPS_CATEGORY

DEFAULT_WIDTH = 960
MIN_WIDTH, MAX_WIDTH = 480, 2400
DEFAULT_CHANNELS = 12  # panels when the request names no channels
MAX_CHANNELS = 32  # panels at most
DEFAULT_MAX_SAMPLES = 4_000_000

GUTTER, RIGHT = 178, 14  # label column, right margin
HEADER, LAP_BAND, AXIS = 26, 20, 34
PANEL_H, PANEL_GAP = 60, 10
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#c9a227", "#b07aa1", "#ff9da7", "#9c755f", "#6b6ecf"]
FONT = "system-ui,-apple-system,Segoe UI,Roboto,sans-serif"

_CODES = {"u8": "B", "s8": "b", "u16": "H", "s16": "h", "u32": "I", "s32": "i", "f32": "f", "f64": "d"}
_BY_WIDTH = {1: "u8", 2: "s16", 4: "f32", 8: "f64"}
_SIZES = {name: array(code).itemsize for name, code in _CODES.items()}
_SWAP = sys.byteorder == "big"  # stored samples are little-endian
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot hold


def max_samples():
    return int(getattr(settings, "RTA_ADMIN_PLOT_MAX_SAMPLES", DEFAULT_MAX_SAMPLES))


# --- decoding --------------------------------------------------------------------------------


def decode_samples(buffer, samples, type_name=""):
    """``(values, is_float)`` for an item's buffer, or None when its width fits no known type."""
    if samples <= 0 or len(buffer) % samples:
        return None
    width = len(buffer) // samples
    name = type_name if _SIZES.get(type_name) == width else _BY_WIDTH.get(width)
    if name is None or _SIZES[name] != width:
        return None
    values = array(_CODES[name])
    values.frombytes(buffer)
    if _SWAP:
        values.byteswap()
    return values, name.startswith("f")


def _extremes(seg, is_float):
    """``(first, last, vmin, imin, vmax, imax)`` of a slice, skipping NaN/inf in float data; None if nothing finite."""
    vmin, vmax = min(seg), max(seg)
    # min()/max() skip a NaN unless it comes first; any non-finite end or extreme takes the slow path.
    if is_float and not all(math.isfinite(v) for v in (seg[0], seg[-1], vmin, vmax)):
        kept = [(k, v) for k, v in enumerate(seg) if math.isfinite(v)]
        if not kept:
            return None
        kmin, vmin = min(kept, key=lambda p: p[1])
        kmax, vmax = max(kept, key=lambda p: p[1])
        return kept[0][0], kept[0][1], kept[-1][0], kept[-1][1], vmin, kmin, vmax, kmax
    return 0, seg[0], len(seg) - 1, seg[-1], vmin, seg.index(vmin), vmax, seg.index(vmax)


# --- buckets ---------------------------------------------------------------------------------


class Buckets:
    """First, last, min and max sample (value and time) per pixel column of ``[lo, hi]``."""

    def __init__(self, lo, hi, columns):
        self.lo, self.hi, self.n = lo, hi, columns
        self.span = hi - lo + 1
        self.cells = {}  # column -> [t_first, v_first, t_last, v_last, t_min, v_min, t_max, v_max]
        self.samples = 0

    def column(self, t):
        return (t - self.lo) * self.n // self.span

    def column_start(self, b):
        """The first time that falls in column ``b``."""
        return self.lo + -(-b * self.span // self.n)

    def _merge(self, b, tf, vf, tl, vl, tmin, vmin, tmax, vmax):
        cell = self.cells.get(b)
        if cell is None:
            self.cells[b] = [tf, vf, tl, vl, tmin, vmin, tmax, vmax]
            return
        if tf < cell[0]:
            cell[0], cell[1] = tf, vf
        if tl >= cell[2]:
            cell[2], cell[3] = tl, vl
        if vmin < cell[5]:
            cell[4], cell[5] = tmin, vmin
        if vmax > cell[7]:
            cell[6], cell[7] = tmax, vmax

    def add_periodic(self, start, interval, values, is_float):
        n = len(values)
        if n == 0:
            return
        if interval <= 0:
            interval, n = 1, 1
        first = max(0, -(-(self.lo - start) // interval))
        end = min(n, (self.hi - start) // interval + 1)
        i = first
        while i < end:
            b = self.column(start + i * interval)
            j = min(end, max(i + 1, -(-(self.column_start(b + 1) - start) // interval)))
            found = _extremes(values[i:j], is_float)
            if found is not None:
                kf, vf, kl, vl, vmin, kmin, vmax, kmax = found
                self._merge(
                    b,
                    start + (i + kf) * interval,
                    vf,
                    start + (i + kl) * interval,
                    vl,
                    start + (i + kmin) * interval,
                    vmin,
                    start + (i + kmax) * interval,
                    vmax,
                )
            self.samples += j - i
            i = j

    def add_timestamped(self, times, values, is_float):
        first, end = bisect_left(times, self.lo), bisect_right(times, self.hi)
        i = first
        while i < end:
            b = self.column(times[i])
            j = max(i + 1, bisect_left(times, self.column_start(b + 1), i, end))
            found = _extremes(values[i:j], is_float)
            if found is not None:
                kf, vf, kl, vl, vmin, kmin, vmax, kmax = found
                self._merge(b, times[i + kf], vf, times[i + kl], vl, times[i + kmin], vmin, times[i + kmax], vmax)
            self.samples += j - i
            i = j


# --- reading ---------------------------------------------------------------------------------


@dataclass
class Trace:
    summary: object  # data_app.admin.summary.ChannelSummary
    buckets: Buckets
    chunks: int = 0  # chunks in range
    chunks_read: int = 0
    undecodable: int = 0  # items whose sample width fits no type

    @property
    def stride(self):
        return max(1, -(-self.chunks // self.chunks_read)) if self.chunks_read else 1


def read_trace(identity, summary, lo, hi, columns, budget):
    """Decode ``summary``'s chunks overlapping ``[lo, hi]`` into buckets, reading at most about ``budget`` samples."""
    refs = list(
        Chunk.objects.filter(
            identity=identity, kind=summary.kind, channel=summary.channel, end_time__gte=lo, start_time__lte=hi
        )
        .order_by("start_time")
        .values_list("file", "offset", "packed_length", "unpacked_length", "compression", "sample_count")
    )
    trace = Trace(summary, Buckets(lo, hi, columns), chunks=len(refs))
    total = sum(r[5] for r in refs)
    stride = max(1, -(-total // max(budget, 1)))
    chosen = refs[::stride] if stride > 1 else refs
    with SegmentReader() as reader:
        for file, offset, packed, unpacked, compression, _ in chosen:
            message = wire.LIST_TYPES[summary.kind]()
            message.ParseFromString(wire.unpack(reader.read(file, offset, packed), unpacked, compression))
            _add_list(trace, summary, message)
    return trace


def read_composed_trace(identity, summary, lo, hi, columns, budget):
    """``read_trace`` for a session whose data lives elsewhere: through the gateway, sampled (``composed``)."""
    chunks = composed.sampled_chunks(identity, summary.kind, summary.channel, lo, hi, budget)
    trace = Trace(summary, Buckets(lo, hi, columns), chunks=len(chunks))
    for chunk in chunks:
        _add_list(trace, summary, chunk.decode(summary.kind))
    return trace


def _add_list(trace, summary, message):
    """One decoded data list's samples into the trace's buckets."""
    type_name = summary.label.type if summary.label is not None else ""
    trace.chunks_read += 1
    if summary.kind == "periodic":
        for item in message.periodic_data:
            decoded = decode_samples(item.buffer, item.samples, type_name)
            if decoded is None:
                trace.undecodable += 1
                continue
            trace.buckets.add_periodic(item.start_timestamp, item.interval, *decoded)
    else:
        for item in message.timestamped_data:
            decoded = decode_samples(item.buffer, len(item.timestamp_deltas), type_name)
            if decoded is None:
                trace.undecodable += 1
                continue
            scale = item.timestamp_deltas_scale or 1
            times = [item.start_timestamp + scale * s for s in accumulate(item.timestamp_deltas)]
            trace.buckets.add_timestamped(times, *decoded)


# --- the picture -----------------------------------------------------------------------------


def _clock(ns, step, span):
    dt = ns_to_datetime(ns)
    if span > 2 * 86400 * NS_PER_S:
        return dt.strftime("%m-%d %H:%M")
    text = dt.strftime("%H:%M:%S" if step < 60 * NS_PER_S or ns % (60 * NS_PER_S) else "%H:%M")
    if step < NS_PER_S:
        text += f".{(ns % NS_PER_S) // 1_000_000:03d}"
    return text


def _number(v):
    a = abs(v)
    if a >= 1e6 or (0 < a < 1e-3):
        return f"{v:.3g}"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if a else "0"


def _xml(text):
    """``text`` escaped for XML, without the control characters XML cannot carry (names come from configs)."""
    return escape(_NOT_XML.sub("", str(text)))


def _text(x, y, text, anchor="start", fill="#333", size=None, weight=None, extra=""):
    attrs = f' font-size="{size}"' if size else ""
    attrs += f' font-weight="{weight}"' if weight else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{attrs}{extra}>{_xml(text)}</text>'


def _fit(text, width_px, size=11):
    limit = max(3, int(width_px / (size * 0.58)))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_plot_options(params):
    """``(channels, start, end, width)`` from query parameters (InvalidArgument on bad input)."""
    from data_app.services.channels import parse_channels

    def integer(name, low=None, high=None):
        value = params.get(name)
        if value in (None, ""):
            return None
        try:
            number = int(value)
        except ValueError:
            raise InvalidArgument(f"{name} must be an integer") from None
        if (low is not None and number < low) or (high is not None and number > high):
            raise InvalidArgument(f"{name} must be between {low} and {high}")
        return number

    expression = params.get("channels")
    channels = parse_channels(expression) if expression not in (None, "") else None
    start, end = integer("start"), integer("end")
    if start is not None and end is not None and start > end:
        raise InvalidArgument(f"start {start} is after end {end}")
    width = integer("width", MIN_WIDTH, MAX_WIDTH) or DEFAULT_WIDTH
    return channels, start, end, width


def render_plot(identity, channels=None, start=None, end=None, width=DEFAULT_WIDTH, title="", markers=(), events=()):
    """The SVG (text) of ``identity``'s periodic and timestamped channels over ``[start, end]`` (ns).

    ``channels`` is a ``ChannelSet`` (default: the first ``DEFAULT_CHANNELS``);
    ``markers`` are ``(label, start, end)`` laps drawn as a band and dividers;
    ``events`` are ``(time, label)`` drawn as flagged lines through the panels.
    """
    width = min(max(int(width), MIN_WIDTH), MAX_WIDTH)
    summary = data_summary(identity)
    candidates = [c for c in summary.channels if c.plottable and (channels is None or c.channel in channels)]
    limit = DEFAULT_CHANNELS if channels is None else MAX_CHANNELS
    shown, hidden = candidates[:limit], len(candidates) - min(len(candidates), limit)
    plot_w = width - GUTTER - RIGHT
    if not shown:
        return _empty(width, title, "No periodic or timestamped data" + (" in these channels." if channels else "."))
    lo = max(start if start is not None else -(2**63), min(c.start for c in shown))
    hi = min(end if end is not None else 2**63 - 1, max(c.end for c in shown))
    if lo > hi:
        return _empty(width, title, "No data in this time range.")
    if lo == hi:
        lo, hi = lo - NS_PER_S // 2, hi + NS_PER_S // 2
    budget = max(max_samples() // len(shown), 1)
    read = read_composed_trace if summary.composed else read_trace
    traces = [read(identity, c, lo, hi, plot_w, budget) for c in shown]
    laps = [
        (label, max(s, lo), min(e, hi))
        for label, s, e in markers
        if s is not None and e is not None and e >= lo and s <= hi and e > s
    ]
    flags = [(t, label) for t, label in events if lo <= t <= hi]
    return _svg(width, plot_w, title, lo, hi, traces, hidden, laps, flags)


def _empty(width, title, message):
    height = 64
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}" font-size="12" role="img">'
        + _text(12, 22, title, weight="600")
        + _text(12, 46, message, fill="#666")
        + "</svg>"
    )


def _svg(width, plot_w, title, lo, hi, traces, hidden, laps, events=()):
    top = HEADER + (LAP_BAND if laps else 0)
    height = top + len(traces) * (PANEL_H + PANEL_GAP) + AXIS + (14 if hidden else 0)
    span = hi - lo
    x0 = GUTTER

    def x_of(t):
        return x0 + (t - lo) / span * plot_w

    read = sum(t.buckets.samples for t in traces)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="{FONT}" font-size="11" role="img" class="rta-data-plot" '
        f'data-start="{lo}" data-end="{hi}" data-columns="{plot_w}">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        _text(8, 17, _fit(title, width * 0.55, 12), weight="600", size=12),
        _text(
            width - RIGHT,
            17,
            f"{format_duration(span)} · {read:,} samples · min/max per pixel",
            anchor="end",
            fill="#777",
        ),
    ]
    panels_bottom = top + len(traces) * (PANEL_H + PANEL_GAP) - PANEL_GAP
    for index in range(len(traces)):  # panel backgrounds first: grid and lap lines go over them
        out.append(
            f'<rect x="{x0}" y="{top + index * (PANEL_H + PANEL_GAP)}" width="{plot_w}" height="{PANEL_H}" '
            f'fill="#fbfbfb" stroke="#ddd"/>'
        )

    # Time grid across every panel, labelled under the last one.
    step = tick_step(span, max(2, plot_w // 90))
    tick = -(-lo // step) * step
    while tick <= hi:
        tx = x_of(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 2}" x2="{tx:.1f}" y2="{panels_bottom + 4}" stroke="#ececec"/>')
        out.append(_text(tx, panels_bottom + 17, _clock(tick, step, span), anchor="middle", fill="#666"))
        tick += step
    out.append(_text(width - RIGHT, panels_bottom + 30, "UTC", anchor="end", fill="#999", size=10))

    # Laps: a labelled band on top and a divider through the panels at each lap start.
    for index, (label, s, e) in enumerate(laps):
        sx, ex = x_of(s), x_of(e)
        shade = "#dfe9f1" if index % 2 == 0 else "#c9dae7"
        out.append(
            f'<g><title>{_xml(label)}</title><rect x="{sx:.1f}" y="{HEADER}" width="{max(ex - sx, 1):.1f}" '
            f'height="{LAP_BAND - 5}" fill="{shade}"/></g>'
        )
        if len(label) * 6.2 + 4 < ex - sx:
            out.append(_text((sx + ex) / 2, HEADER + LAP_BAND - 9, label, anchor="middle", fill="#335", size=10))
        out.append(
            f'<line x1="{sx:.1f}" y1="{HEADER}" x2="{sx:.1f}" y2="{panels_bottom}" stroke="#9bb3c6" '
            f'stroke-dasharray="3 3" stroke-width="0.8"/>'
        )

    # Events: a line through the panels under a small flag whose tooltip names the event.
    for t, label in events:
        ex = x_of(t)
        out.append(
            f'<g class="rta-event"><title>{_xml(label)} at {_clock(t, 1, span)}</title>'
            f'<line x1="{ex:.1f}" y1="{top - 6}" x2="{ex:.1f}" y2="{panels_bottom}" stroke="#c9302c" '
            f'stroke-width="0.8" stroke-opacity="0.5"/>'
            f'<polygon points="{ex:.1f},{top - 10} {ex + 6:.1f},{top - 7.5} {ex:.1f},{top - 5}" fill="#c9302c"/></g>'
        )

    for index, trace in enumerate(traces):
        out.extend(_panel(trace, top + index * (PANEL_H + PANEL_GAP), x0, plot_w, span))
    if hidden:
        out.append(
            _text(
                8, height - 6, f"{hidden} more channel(s) not shown: choose them with ?channels=", fill="#999", size=10
            )
        )
    out.append("</svg>")
    return "".join(out)


def _panel(trace, y0, x0, plot_w, span):
    c = trace.summary
    label = c.label
    colour = PALETTE[c.channel % len(PALETTE)]  # by channel, so a channel keeps its colour in every view
    conversion = label.linear_conversion() if label is not None else None
    gain, offset = conversion if conversion else (1.0, 0.0)
    unit = (label.unit if conversion else "raw") if label is not None else "raw"
    cells = sorted(trace.buckets.cells.items())
    out = []
    name = c.name
    kind = c.kind
    if c.rate_hz:
        kind += f", {c.rate_hz:.3g} Hz" if c.kind == "periodic" else f", ~{c.rate_hz:.2g} Hz"
    desc = label.description if label is not None else ""
    tooltip = f"{name}: {desc}" if desc else name
    out.append(f"<g><title>{_xml(f'{tooltip} (channel {c.channel:#x}, {kind})')}</title>")
    out.append(_text(8, y0 + 14, _fit(name, GUTTER - 60, 12), weight="600", size=12, fill=colour))
    details = f"{unit} · ch {c.channel:#x}" if unit else f"ch {c.channel:#x}"
    out.append(_text(8, y0 + 28, _fit(details, GUTTER - 60), fill="#666", size=10))
    out.append(_text(8, y0 + 41, _fit(kind, GUTTER - 60), fill="#999", size=10))
    out.append("</g>")
    if not cells:
        out.append(_text(x0 + 8, y0 + PANEL_H / 2 + 4, "no samples in range", fill="#999"))
        out.append(f'<path class="rta-trace" data-channel="{c.channel:x}" data-points="0" d="" fill="none"/>')
        return out
    values = [gain * v + offset for cell in cells for v in (cell[1][5], cell[1][7])]
    vmin, vmax = min(values), max(values)
    pad = (vmax - vmin) * 0.06 or max(abs(vmax) * 0.05, 1.0)
    ylo, yhi = vmin - pad, vmax + pad
    inner_top, inner_h = y0 + 2, PANEL_H - 4

    def row(value):
        """Pixel row of an engineering value."""
        return inner_top + (yhi - value) / (yhi - ylo) * inner_h

    # Axis labels: the data's extremes, and zero when it lies inside.
    out.append(_text(x0 - 5, row(vmax) + 4, _number(vmax), anchor="end", fill="#555", size=10))
    out.append(_text(x0 - 5, row(vmin) + 1, _number(vmin), anchor="end", fill="#555", size=10))
    if ylo < 0 < yhi:
        zy = row(0.0)
        out.append(
            f'<line x1="{x0}" y1="{zy:.1f}" x2="{x0 + plot_w}" y2="{zy:.1f}" stroke="#cfcfcf" stroke-dasharray="2 2"/>'
        )

    # Break the line over gaps much longer than the channel's own sample spacing.
    spacing = (c.end - c.start) / (c.samples - 1) if c.samples > 1 else span
    bucket_ns = span / plot_w
    gap = max(5 * spacing, 2.5 * bucket_ns)
    parts, points, last_t, last_xy = [], 0, None, None
    for b, (tf, vf, tl, vl, tmin, vmin_raw, tmax, vmax_raw) in cells:
        x = x0 + (b + 0.5) * plot_w / trace.buckets.n
        ordered = [(tf, vf)] + sorted([(tmin, vmin_raw), (tmax, vmax_raw)]) + [(tl, vl)]
        move = last_t is None or tf - last_t > gap
        for _, v in ordered:
            xy = (round(x, 1), round(row(gain * v + offset), 1))
            if xy == last_xy and not move:
                continue
            parts.append(f"{'M' if move else 'L'}{xy[0]:g} {xy[1]:g}")
            move, last_xy = False, xy
            points += 1
        last_t = tl
    notes = []
    if trace.stride > 1:
        notes.append(f"1 in {trace.stride} chunks read (sample cap)")
    if trace.undecodable:
        notes.append(f"{trace.undecodable} item(s) of unknown sample width skipped")
    out.append(
        f'<path class="rta-trace" data-channel="{c.channel:x}" data-points="{points}" '
        f'data-samples="{trace.buckets.samples}" data-min="{vmin:g}" data-max="{vmax:g}" d="{" ".join(parts)}" '
        f'fill="none" stroke="{colour}" stroke-width="1" stroke-linejoin="round"/>'
    )
    if notes:
        out.append(_text(x0 + plot_w - 4, y0 + PANEL_H - 5, "; ".join(notes), anchor="end", fill="#b05000", size=10))
    return out


def lap_markers(identity, limit=500):
    """``(label, start, end)`` of the session's timed laps (markers in ``LAPS_CATEGORY``)."""
    rows = (
        Marker.objects.filter(
            session_id=identity, category=LAPS_CATEGORY, start_time__isnull=False, end_time__isnull=False
        )
        .order_by("start_time")
        .values_list("label", "marker_id", "start_time", "end_time")[:limit]
    )
    return [(label or marker_id, start, end) for label, marker_id, start, end in rows]


def session_events(identity, start=None, end=None, limit=500):
    """``(time, label)`` of up to ``limit`` of the session's stored events in ``[start, end]``, for the plot."""
    from data_app.store import reader

    out = []
    for events in reader.decoded_lists("events", reader.find_chunks(identity, "events", None, start, end)):
        for event in events.events:
            if (start is None or event.timestamp >= start) and (end is None or event.timestamp <= end):
                out.append((event.timestamp, event.status_text or f"event {event.event_definition_id:#x}"))
                if len(out) >= limit:
                    return out
    return out
