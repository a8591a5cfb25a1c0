"""Pictures of the Session Service admin: the state badge, the session timeline, count bars.

Everything here is pure (no database access) and returns safe HTML/SVG built
server-side; the admin uses no JavaScript libraries. Times are put into words
by ``rta_core.timeutil``.
"""

from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from rta_core.timeutil import NS_PER_S, format_duration, format_range, format_utc, ns_to_datetime, tick_step
from sessions_app.models import SessionState
from sessions_app.services.values import LAPS_CATEGORY

STATE_COLOURS = {
    SessionState.UNKNOWN: "#8a8a8a",
    SessionState.WAITING: "#c98a00",
    SessionState.OPEN: "#2e8b57",
    SessionState.CLOSED: "#417690",
    SessionState.TRUNCATED: "#d2691e",
    SessionState.FAILED: "#c0392b",
    SessionState.ABANDONED: "#5d5d5d",
}

# Tableau 10: distinct, colour-blind friendly hues for marker categories.
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


# --- state badge -----------------------------------------------------------------------------


def state_badge(state):
    label = SessionState(state).label if state in SessionState.values else f"state {state}"
    colour = STATE_COLOURS.get(state, "#8a8a8a")
    return format_html(
        '<span class="rta-state" title="{} ({})" style="display:inline-block;min-width:5.5em;padding:1px 8px;'
        "border-radius:9px;background:{};color:#fff;font-size:11px;font-weight:600;text-align:center;"
        'letter-spacing:.02em">{}</span>',
        label,
        state,
        colour,
        label,
    )


# --- timeline picture ------------------------------------------------------------------------

_H = 3600 * NS_PER_S


def _text_width(text, size=11):
    return len(text) * size * 0.6


def timeline_svg(start, end, markers, width=820):
    """An SVG picture of a session's time range with its markers as labelled bars, one row per category.

    ``markers`` are objects or dicts with ``marker_id``, ``category``, ``label``, ``start_time`` and
    ``end_time``. Returns safe markup, or an empty string when there is no time to draw.
    """
    items = []
    for m in markers:
        get = m.get if isinstance(m, dict) else (lambda k, m=m: getattr(m, k, None))
        if get("start_time") is None:
            continue
        items.append(
            {
                "id": get("marker_id") or get("id") or "",
                "category": get("category") or "",
                "label": get("label") or get("marker_id") or get("id") or "",
                "start": int(get("start_time")),
                "end": int(get("end_time")) if get("end_time") is not None else None,
            }
        )
    points = [p for p in (start, end) if p is not None]
    for item in items:
        points.append(item["start"])
        if item["end"] is not None:
            points.append(item["end"])
    if not points:
        return ""
    lo, hi = min(points), max(points)
    if hi == lo:
        lo, hi = lo - NS_PER_S // 2, hi + NS_PER_S // 2

    # Laps first (the row people look for), then categories in order of first appearance.
    categories = sorted(dict.fromkeys(i["category"] for i in items), key=lambda c: c != LAPS_CATEGORY)
    gutter = 86
    right = 14
    plot = width - gutter - right
    row_h, bar_h = 24, 17
    top = 8
    height = top + row_h * (1 + len(categories)) + 30
    span = hi - lo

    def x(ns):
        return gutter + (ns - lo) / span * plot

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rta-timeline" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;'
        f'font-size:11px" role="img" aria-label="Session timeline">',
    ]
    axis_y = top + row_h * (1 + len(categories)) + 2

    # Grid lines and tick labels (UTC clock times).
    step = tick_step(span)
    first = -(-lo // step) * step
    with_ms = step < NS_PER_S
    tick = first
    while tick <= hi:
        tx = x(tick)
        if span > 24 * _H:
            label = ns_to_datetime(tick).strftime("%m-%d %H:%M")
        else:
            label = format_utc(tick, with_date=False, precision=3 if with_ms else 0)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{axis_y}" stroke="#e3e3e3" stroke-width="1"/>'
            f'<text x="{tx:.1f}" y="{axis_y + 13}" text-anchor="middle" fill="#666">{label}</text>'
        )
        tick += step
    parts.append(
        f'<line x1="{gutter}" y1="{axis_y}" x2="{gutter + plot}" y2="{axis_y}" stroke="#999" stroke-width="1"/>'
        f'<text x="{gutter + plot}" y="{axis_y + 26}" text-anchor="end" fill="#999">UTC</text>'
    )

    # The session's own time range.
    y = top
    parts.append(f'<text x="{gutter - 8}" y="{y + bar_h - 4}" text-anchor="end" fill="#333">session</text>')
    if start is not None and end is not None:
        sx, ex = x(start), x(end)
        w = max(ex - sx, 2)
        title = escape(f"session: {format_range(start, end)} ({format_duration(end - start)})")
        parts.append(
            f'<g><title>{title}</title><rect x="{sx:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" '
            f'fill="#79aec8" opacity="0.9"/>'
        )
        duration = format_duration(end - start)
        if _text_width(duration) + 8 < w:
            parts.append(
                f'<text x="{sx + w / 2:.1f}" y="{y + bar_h - 5}" text-anchor="middle" fill="#fff" '
                f'font-weight="600">{escape(duration)}</text>'
            )
        parts.append("</g>")
    else:
        parts.append(f'<text x="{gutter}" y="{y + bar_h - 4}" fill="#999">no time range</text>')

    # One row per marker category; adjacent markers alternate shade so laps stay distinguishable.
    for row, category in enumerate(categories, start=1):
        y = top + row * row_h
        colour = PALETTE[(row - 1) % len(PALETTE)]
        name = category or "(none)"
        if _text_width(name) > gutter - 12:
            name = name[: int((gutter - 12) / 6.6) - 1] + "…"
        parts.append(f'<text x="{gutter - 8}" y="{y + bar_h - 4}" text-anchor="end" fill="#333">{escape(name)}</text>')
        row_items = sorted((i for i in items if i["category"] == category), key=lambda i: i["start"])
        for index, item in enumerate(row_items):
            sx = x(item["start"])
            title_when = (
                f"{format_range(item['start'], item['end'])} ({format_duration(item['end'] - item['start'])})"
                if item["end"] is not None
                else f"{format_utc(item['start'])} UTC"
            )
            title = escape(f"{item['label']} [{item['id']}]: {title_when}")
            if item["end"] is None or item["end"] == item["start"]:
                parts.append(
                    f'<g><title>{title}</title><path d="M{sx:.1f} {y + 2} l5 {bar_h / 2 - 2:.1f} l-5 '
                    f'{bar_h / 2 - 2:.1f} l-5 {-(bar_h / 2 - 2):.1f} z" fill="{colour}"/></g>'
                )
                continue
            w = max(x(item["end"]) - sx, 1.5)
            opacity = "1" if index % 2 == 0 else "0.72"
            parts.append(
                f'<g><title>{title}</title><rect x="{sx:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="2" '
                f'fill="{colour}" fill-opacity="{opacity}" stroke="#fff" stroke-width="1"/>'
            )
            label = item["label"]
            if _text_width(label) + 6 < w:
                parts.append(
                    f'<text x="{sx + w / 2:.1f}" y="{y + bar_h - 5}" text-anchor="middle" fill="#fff">'
                    f"{escape(label)}</text>"
                )
            parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))


def count_bar(count, largest, width=80):
    """A tiny horizontal bar for a count relative to the largest in view."""
    if not largest:
        return ""
    w = max(1, round(width * count / largest)) if count else 0
    return format_html(
        '<span style="display:inline-block;vertical-align:middle;width:{}px;height:7px;background:#eee;'
        'border-radius:3px;margin-left:6px"><span style="display:block;width:{}px;height:7px;background:#79aec8;'
        'border-radius:3px"></span></span>',
        width,
        w,
    )
