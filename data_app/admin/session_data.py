"""The "Data" panel of the session change page: what the session stores, per kind and channel, and a plot.

Registered into the session admin through ``sessions_app.admin.panels`` (see ``data_app/admin/__init__``):
sessions_app cannot import data_app. The plot is served under the session admin's URLs
(``admin:sessions_app_session_data_plot``: ``<session>/data-plot.svg``), with its permissions.
"""

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from data_app.admin import composed, plot
from data_app.admin.summary import data_summary
from data_app.store import objects
from rta_core.errors import ServiceError
from rta_core.responses import json_error
from rta_core.timeutil import format_duration, format_range
from sessions_app.admin.panels import SessionPanel

ROWS_SHOWN = 200
PLOT_URL_NAME = "sessions_app_session_data_plot"


@admin.display(description="data")
def data_overview(session):
    """The data the session holds per kind and channel (from the chunk index) and a plot of it."""
    summary = data_summary(session.identity)
    plot_url = reverse(f"admin:{PLOT_URL_NAME}", args=[quote(session.identity)])
    rows = [
        {
            "channel": c,
            "plot_url": f"{plot_url}?{urlencode({'channels': f'{c.channel:x}'})}" if c.plottable else "",
            "span": format_range(c.start, c.end, zone="", with_date=False),
            "duration": format_duration(c.duration),
            "samples": "—" if summary.composed else f"{c.samples:,}",
            "rate": f"{c.rate_hz:.4g} Hz" if c.rate_hz and c.kind != "events" else "—",
            "chunks": "—" if summary.composed else f"{c.chunks:,}",
            "stored": "elsewhere" if summary.composed else byte_size(c.stored_bytes),
            "bytes_per_sample": "—" if summary.composed else f"{c.bytes_per_sample:.2f}",
        }
        for c in summary.channels[:ROWS_SHOWN]
    ]
    kinds = [{**k, "stored": byte_size(k["stored_bytes"])} for k in summary.kinds()]
    return mark_safe(
        render_to_string(
            "admin/data_app/session_data.html",
            {
                "summary": summary,
                "placements": composed.placements(session.identity),
                "rows": rows,
                "more_rows": max(0, len(summary.channels) - ROWS_SHOWN),
                "kinds": kinds,
                "samples": f"{summary.samples:,}",
                "chunks": f"{summary.chunks:,}",
                "stored": byte_size(summary.stored_bytes),
                "unpacked": byte_size(summary.unpacked_bytes),
                "location": objects.location(),  # where the bytes are: file store or s3://bucket/prefix
                "span": format_range(summary.start, summary.end) if not summary.empty else "",
                "plot_url": plot_url,
                "plotted": sum(1 for c in summary.channels if c.plottable),
                "plot_limit": plot.DEFAULT_CHANNELS,
            },
        )
    )


def plot_view(model_admin, request, object_id):
    """SVG plot of the session's channels; ``?channels=`` (hex expression), ``start``/``end`` (ns), ``width``."""
    session = model_admin.get_object(request, unquote(object_id))
    if session is None:
        return json_error(f"session {unquote(object_id)!r} not found", 404)
    if not model_admin.has_view_permission(request, session):
        raise PermissionDenied
    try:
        channels, start, end, width = plot.parse_plot_options(request.GET)
    except ServiceError as exc:
        return json_error(exc.message, exc.http_status)
    svg = plot.render_plot(
        session.identity,
        channels,
        start,
        end,
        width,
        title=session.identifier,
        markers=plot.lap_markers(session.identity),
        events=plot.session_events(session.identity, start, end),
    )
    response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    response["Cache-Control"] = "private, no-cache"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


def urls(model_admin):
    def view(request, object_id):
        return plot_view(model_admin, request, object_id)

    return [path("<path:object_id>/data-plot.svg", model_admin.admin_site.admin_view(view), name=PLOT_URL_NAME)]


def byte_size(n):
    """``1.4 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


PANEL = SessionPanel(title="Data", render=data_overview, urls=urls, classes=("rta-data-set",))
