"""Django admin for the Session Service: sessions, their markers / bindings / folders / refs, and folders.

Every change goes through the service layer, never straight to the models:

* a session's edits (form and inlines together) become one ``create_or_update_session`` call
  with ``set_*`` ops, so validation and the root re-linking of orphans apply as for gRPC;
* sessions are deleted with ``updates.delete_sessions``;
* folders are saved with ``folders.put_folder`` and deleted with ``folders.delete_folders``
  (which re-links orphaned sessions to the root). The root folder cannot be changed or deleted.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce
from django.http import HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from data_app.admin import plot as data_plot
from data_app.admin.summary import data_summary
from rta_core.errors import InvalidArgument, ServiceError, json_error
from sessions_app.admin import display
from sessions_app.admin.forms import (
    ConfigBindingForm,
    ConfigBindingFormSet,
    DataBindingForm,
    DataBindingFormSet,
    FolderActionForm,
    FolderChoiceField,
    FolderForm,
    FolderLinkForm,
    FolderLinkFormSet,
    MarkerForm,
    MarkerFormSet,
    SessionForm,
    SessionRefForm,
    SessionRefFormSet,
)
from sessions_app.models import (
    ROOT_FOLDER,
    ConfigBinding,
    DataBinding,
    Folder,
    FolderLink,
    Marker,
    Session,
    SessionRef,
)
from sessions_app.services import admin_ops, folders, updates


class ServiceRejected(Exception):
    """The service refused an edit the forms had accepted."""


# --- list filters ----------------------------------------------------------------------------


class FolderListFilter(admin.SimpleListFilter):
    """Sessions in a folder or any of its sub-folders (the scope ``folder=X`` has in the API)."""

    title = "folder (with sub-folders)"
    parameter_name = "folder"

    def lookups(self, request, model_admin):
        return [
            (node.identity, "\u2003" * (node.depth - 1) + node.name)
            for node in admin_ops.folder_tree().values()
            if node.identity != ROOT_FOLDER
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        scope = folders.subtree_identities(value)
        return queryset.filter(identity__in=FolderLink.objects.filter(folder_id__in=scope).values("session_id"))


# --- inlines ---------------------------------------------------------------------------------


class ServiceInline(admin.TabularInline):
    """Inline rows that the session admin turns into one ``set_*`` op (never saved directly)."""

    extra = 0
    classes = ["rta-inline"]


class MarkerInline(ServiceInline):
    model = Marker
    form = MarkerForm
    formset = MarkerFormSet
    readonly_fields = ["when"]
    verbose_name = "marker"
    verbose_name_plural = "markers (laps and other annotated regions)"

    @admin.display(description="when (UTC)")
    def when(self, obj):
        if obj is None or obj.start_time is None:
            return "—"
        if obj.end_time is None:
            return display.format_utc(obj.start_time, with_date=False)
        span = display.format_range(obj.start_time, obj.end_time, zone="", with_date=False)
        return format_html("{}<br>{}", span, display.format_duration(obj.end_time - obj.start_time))


class ConfigBindingInline(ServiceInline):
    model = ConfigBinding
    form = ConfigBindingForm
    formset = ConfigBindingFormSet


class DataBindingInline(ServiceInline):
    model = DataBinding
    form = DataBindingForm
    formset = DataBindingFormSet
    classes = ["rta-inline", "collapse"]


class FolderLinkInline(ServiceInline):
    model = FolderLink
    form = FolderLinkForm
    formset = FolderLinkFormSet
    verbose_name = "folder"
    verbose_name_plural = "folders (a session left in no folder returns to the root)"


class SessionRefInline(ServiceInline):
    model = SessionRef
    form = SessionRefForm
    formset = SessionRefFormSet
    verbose_name = "reference"
    verbose_name_plural = "references (anchors, child of, alternate of)"


# --- sessions --------------------------------------------------------------------------------


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    form = SessionForm
    inlines = [MarkerInline, FolderLinkInline, SessionRefInline, ConfigBindingInline, DataBindingInline]
    list_display = [
        "identifier",
        "identity",
        "state_badge",
        "timestamp_display",
        "type",
        "quality",
        "time_range",
        "duration",
        "details_summary",
    ]
    list_display_links = ["identifier", "identity"]
    list_filter = ["state", "type", FolderListFilter]
    date_hierarchy = "timestamp"
    # details_text / ext_details_text are aliases added in get_search_results.
    search_fields = ["identity", "identifier", "details_text", "ext_details_text"]
    search_help_text = "Matches identity, identifier and detail keys or values (all words must match)."
    ordering = ["-timestamp_ns", "identity"]
    list_per_page = 50
    action_form = FolderActionForm
    actions = ["close_sessions", "link_to_folder", "move_to_folder", "delete_selected"]

    # -- list

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_duration=ExpressionWrapper(F("end_time") - F("start_time"), output_field=BigIntegerField()))
        )

    def get_search_results(self, request, queryset, search_term):
        # Details are JSON; searching their text form works the same on PostgreSQL (jsonb::text)
        # and SQLite (JSON stored as text), keys and values alike. NUL can match nothing stored.
        search_term = search_term.replace("\x00", "")
        queryset = queryset.alias(
            details_text=Cast("details", output_field=TextField()),
            ext_details_text=Cast("ext_details", output_field=TextField()),
        )
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj):
        return display.state_badge(obj.state)

    @admin.display(description="timestamp", ordering="timestamp_ns")
    def timestamp_display(self, obj):
        return obj.timestamp_text

    @admin.display(description="time range (UTC)", ordering="start_time")
    def time_range(self, obj):
        return display.format_range(obj.start_time, obj.end_time, precision=0, zone="")

    @admin.display(description="duration", ordering="_duration")
    def duration(self, obj):
        if obj.start_time is None or obj.end_time is None:
            return "—"
        return display.format_duration(obj.end_time - obj.start_time)

    @admin.display(description="details")
    def details_summary(self, obj):
        if not obj.details:
            return ""
        text = ", ".join(f"{k}={v}" for k, v in obj.details.items())
        return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(48))

    # -- change page

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [
            "identity",
            "timeline",
            "data_overview",
            "time_range_text",
            "related_sessions",
            "heartbeat",
            "last_sequence",
            "created",
            "updated",
        ]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": ["identity", "identifier", "state", "timestamp_text"]}),
                ("Classification", {"fields": ["type", "quality", "group", "version"]}),
                ("Time range", {"fields": ["start_time", "end_time"]}),
                ("Details", {"fields": ["details", "ext_details"]}),
            ]
        return [
            ("Timeline", {"fields": ["timeline"], "classes": ["rta-timeline-set"]}),
            ("Data", {"fields": ["data_overview"], "classes": ["rta-data-set"]}),
            (None, {"fields": ["identity", "identifier", "state", "timestamp_text"]}),
            ("Classification", {"fields": ["type", "quality", "group", "version"]}),
            ("Time range", {"fields": ["time_range_text", ("start_time", "end_time")]}),
            ("Details", {"fields": ["details", "ext_details"]}),
            ("Relationships", {"fields": ["related_sessions"]}),
            ("Bookkeeping", {"fields": ["heartbeat", "last_sequence", "created", "updated"], "classes": ["collapse"]}),
        ]

    @admin.display(description="timeline")
    def timeline(self, obj):
        picture = display.timeline_svg(obj.start_time, obj.end_time, obj.markers.all())
        return picture or "No time range and no timed markers yet."

    DATA_ROWS_SHOWN = 200

    @admin.display(description="data")
    def data_overview(self, obj):
        """The data the session holds per kind and channel (from the chunk index) and a plot of it."""
        summary = data_summary(obj.identity)
        plot_url = reverse("admin:sessions_app_session_data_plot", args=[quote(obj.identity)])
        rows = [
            {
                "channel": c,
                "plot_url": f"{plot_url}?{urlencode({'channels': f'{c.channel:x}'})}" if c.plottable else "",
                "span": display.format_range(c.start, c.end, zone="", with_date=False),
                "duration": display.format_duration(c.duration),
                "samples": f"{c.samples:,}",
                "rate": f"{c.rate_hz:.4g} Hz" if c.rate_hz and c.kind != "events" else "—",
                "chunks": f"{c.chunks:,}",
                "stored": _bytes(c.stored_bytes),
                "bytes_per_sample": f"{c.bytes_per_sample:.2f}",
            }
            for c in summary.channels[: self.DATA_ROWS_SHOWN]
        ]
        kinds = [{**k, "stored": _bytes(k["stored_bytes"])} for k in summary.kinds()]
        return mark_safe(
            render_to_string(
                "admin/sessions_app/session/_data.html",
                {
                    "summary": summary,
                    "rows": rows,
                    "more_rows": max(0, len(summary.channels) - self.DATA_ROWS_SHOWN),
                    "kinds": kinds,
                    "samples": f"{summary.samples:,}",
                    "chunks": f"{summary.chunks:,}",
                    "stored": _bytes(summary.stored_bytes),
                    "unpacked": _bytes(summary.unpacked_bytes),
                    "span": display.format_range(summary.start, summary.end) if not summary.empty else "",
                    "plot_url": plot_url,
                    "plotted": sum(1 for c in summary.channels if c.plottable),
                    "plot_limit": data_plot.DEFAULT_CHANNELS,
                },
            )
        )

    def get_urls(self):
        # Before the default ``<path:object_id>/`` routes, which would swallow it.
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/data-plot.svg",
                self.admin_site.admin_view(self.data_plot_view),
                name="%s_%s_data_plot" % info,
            ),
        ] + super().get_urls()

    def data_plot_view(self, request, object_id):
        """SVG plot of the session's channels; ``?channels=`` (hex expression), ``start``/``end`` (ns), ``width``."""
        session = self.get_object(request, unquote(object_id))
        if session is None:
            return json_error(f"session {unquote(object_id)!r} not found", 404)
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        try:
            channels, start, end, width = data_plot.parse_plot_options(request.GET)
        except ServiceError as exc:
            return json_error(exc.message, exc.http_status)
        svg = data_plot.render_plot(
            session.identity,
            channels,
            start,
            end,
            width,
            title=session.identifier,
            markers=data_plot.lap_markers(session.identity),
            events=data_plot.session_events(session.identity, start, end),
        )
        response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
        response["Cache-Control"] = "private, no-cache"
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return response

    @admin.display(description="time range")
    def time_range_text(self, obj):
        if obj.start_time is None or obj.end_time is None:
            return "No data yet (no time range)."
        span = display.format_range(obj.start_time, obj.end_time)
        return f"{span}, {display.format_duration(obj.end_time - obj.start_time)}"

    @admin.display(description="related sessions")
    def related_sessions(self, obj):
        related = admin_ops.related_sessions(obj.identity)
        titles = (("parents", "child or alternate of"), ("children", "children"), ("alternates", "alternates"))
        rows = [(title, related[key]) for key, title in titles if related[key]]
        if not rows:
            return "None (declare anchors and child_of / alternate_of refs below)."

        def links(identities):
            return format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                ((reverse("admin:sessions_app_session_change", args=[i]), i) for i in identities),
            )

        return format_html_join(mark_safe("<br>"), "{}: {}", ((title, links(ids)) for title, ids in rows))

    # -- saving through the service layer

    def save_model(self, request, obj, form, change):
        """Nothing is written here: ``save_related`` applies form and inlines as one service call."""

    def save_related(self, request, form, formsets, change):
        ops, create = form.session_ops()
        for formset in formsets:
            if formset.has_changed():
                ops.extend(formset.ops())
            formset.record_changes()
        identity = form.instance.identity
        try:
            if ops or create:
                admin_ops.apply_session_edit(identity, ops, create=create)
        except InvalidArgument as exc:
            # The forms dry-run the same ops, so this is a race or a rule they missed. Leaving the
            # admin's atomic block with an exception undoes everything, the history entry included.
            raise ServiceRejected(admin_ops.service_message(exc)) from None
        form.instance.refresh_from_db()

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRejected as exc:
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        updates.delete_sessions([obj.identity])

    def delete_queryset(self, request, queryset):
        updates.delete_sessions(list(queryset.values_list("identity", flat=True)))

    # -- actions

    @admin.action(description="Close selected sessions (state closed)", permissions=["change"])
    def close_sessions(self, request, queryset):
        closed, already = admin_ops.close_sessions(list(queryset.values_list("identity", flat=True)))
        text = f"Closed {closed} session{'s' if closed != 1 else ''}."
        if already:
            text += f" {already} {'was' if already == 1 else 'were'} already in a closed state."
        self.message_user(request, text, messages.SUCCESS)

    def _chosen_folder(self, request):
        try:
            return FolderChoiceField(required=True).clean(request.POST.get("folder"))
        except ValidationError:
            self.message_user(request, "Choose a folder in the box beside the action first.", messages.WARNING)
            return None

    @admin.action(description="Link selected sessions into the chosen folder", permissions=["change"])
    def link_to_folder(self, request, queryset):
        folder = self._chosen_folder(request)
        if folder is not None:
            count = admin_ops.link_sessions(list(queryset.values_list("identity", flat=True)), folder.identity)
            self.message_user(request, f"Linked {count} session(s) into {folder}.", messages.SUCCESS)

    @admin.action(description="Move selected sessions to the chosen folder (only)", permissions=["change"])
    def move_to_folder(self, request, queryset):
        folder = self._chosen_folder(request)
        if folder is not None:
            identities = list(queryset.values_list("identity", flat=True))
            count = admin_ops.link_sessions(identities, folder.identity, move=True)
            self.message_user(request, f"Moved {count} session(s) to {folder}.", messages.SUCCESS)


def _bytes(n):
    """``1.4 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


# --- folders ---------------------------------------------------------------------------------

_FOLDER_ICON = (
    '<svg width="14" height="11" viewBox="0 0 14 11" style="vertical-align:-1px;margin-right:5px" aria-hidden="true">'
    '<path d="M0.5 1.5a1 1 0 0 1 1-1h3.6l1.4 1.5h6a1 1 0 0 1 1 1v6.5a1 1 0 0 1-1 1h-11a1 1 0 0 1-1-1z" '
    'fill="{}" stroke="#5b8fa8" stroke-width="1"/></svg>'
)
TREE_ORDER_LIMIT = 2000


class FolderTreeChangeList(ChangeList):
    """Orders folders depth-first (a tree), and counts the sessions linked into each."""

    def get_queryset(self, request, exclude_parameters=None):
        qs = super().get_queryset(request, exclude_parameters)
        direct = (
            FolderLink.objects.filter(folder_id=OuterRef("identity"))
            .order_by()
            .values("folder_id")
            .annotate(n=Count("id"))
            .values("n")
        )
        qs = qs.annotate(
            _sessions=Coalesce(Subquery(direct, output_field=IntegerField()), Value(0)),
            _total=Value(Session.objects.count(), output_field=IntegerField()),
        )
        tree = admin_ops.folder_tree()
        depth = {identity: node.depth for identity, node in tree.items()}
        if len(tree) <= TREE_ORDER_LIMIT and not self.get_ordering_field_columns():
            position = Case(
                *[When(identity=identity, then=Value(node.position)) for identity, node in tree.items()],
                default=Value(len(tree)),
                output_field=IntegerField(),
            )
            qs = qs.annotate(_tree_pos=position).order_by("_tree_pos", "identity")
        self.tree_depth = depth
        return qs


@admin.register(Folder)
class FolderAdmin(admin.ModelAdmin):
    form = FolderForm
    list_display = ["tree_label", "identity_text", "sessions", "description_text"]
    list_display_links = None
    search_fields = ["identity", "label", "description"]
    list_per_page = 500
    sortable_by = []
    ordering = ["label", "identity"]

    ROOT_NOTE = "The root folder cannot be changed or deleted."

    def get_changelist(self, request, **kwargs):
        return FolderTreeChangeList

    @staticmethod
    def _is_root(obj):
        return obj is not None and obj.identity == ROOT_FOLDER

    # -- the root is fixed

    def has_change_permission(self, request, obj=None):
        return not self._is_root(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._is_root(obj) and super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return ["identity", "contents"] if obj is not None else []

    def get_fields(self, request, obj=None):
        fields = ["identity", "parent", "label", "description"]
        return fields + ["contents"] if obj is not None else fields

    # -- list columns

    def action_checkbox(self, obj):
        # The root cannot be selected for an action (its identity is empty, and it is fixed).
        return "" if self._is_root(obj) else super().action_checkbox(obj)

    @admin.display(description="folder")
    def tree_label(self, obj):
        node_depth = getattr(obj, "_depth", None)
        icon = format_html(_FOLDER_ICON, "#fff1c2" if not self._is_root(obj) else "#dbe9f0")
        if self._is_root(obj):
            return format_html('{}<strong>(root)</strong> <span class="help">{}</span>', icon, self.ROOT_NOTE)
        depth = node_depth if node_depth is not None else 1
        indent = max(depth - 1, 0) * 22
        url = reverse("admin:sessions_app_folder_change", args=[obj.identity])
        return format_html(
            '<span style="padding-left:{}px">{}{}<a href="{}">{}</a></span>',
            indent,
            "└\u2009" if depth > 1 else "",
            icon,
            url,
            obj.label or obj.identity,
        )

    @admin.display(description="identity")
    def identity_text(self, obj):
        return format_html("<code>{}</code>", obj.identity) if obj.identity else "—"

    @admin.display(description="sessions (linked directly)")
    def sessions(self, obj):
        count = getattr(obj, "_sessions", None)
        if count is None:
            count = obj.session_links.count()
        url = reverse("admin:sessions_app_session_changelist")
        if not self._is_root(obj):
            url += "?" + urlencode({"folder": obj.identity})
        return format_html(
            '<a href="{}" style="display:inline-block;min-width:3em;text-align:right">{}</a>{}',
            url,
            count,
            display.count_bar(count, getattr(obj, "_total", 0)),
        )

    @admin.display(description="description")
    def description_text(self, obj):
        return Truncator(obj.description).chars(80)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        depth = getattr(changelist, "tree_depth", {})
        for folder in changelist.result_list:
            folder._depth = depth.get(folder.identity)
        return changelist

    @admin.display(description="contents")
    def contents(self, obj):
        count = obj.session_links.count()
        children = list(obj.children.exclude(identity=ROOT_FOLDER).order_by("label", "identity"))
        sessions_url = reverse("admin:sessions_app_session_changelist") + "?" + urlencode({"folder": obj.identity})
        link = format_html('<a href="{}">{} session(s) linked directly</a>', sessions_url, count)
        parts = [format_html("{} (the list includes sub-folders)", link)]
        if children:
            parts.append(
                format_html(
                    "sub-folders: {}",
                    format_html_join(
                        ", ",
                        '<a href="{}">{}</a>',
                        ((reverse("admin:sessions_app_folder_change", args=[c.identity]), str(c)) for c in children),
                    ),
                )
            )
        return format_html_join(mark_safe("<br>"), "{}", ((p,) for p in parts))

    # -- saving and deleting through the service layer

    def save_model(self, request, obj, form, change):
        parent = form.cleaned_data.get("parent")
        folders.put_folder(
            parent.identity if parent is not None else ROOT_FOLDER,
            obj.identity,
            form.cleaned_data.get("label", obj.label),
            form.cleaned_data.get("description", obj.description),
        )

    def save_related(self, request, form, formsets, change):
        """Folders have no inlines or many-to-many fields."""

    def delete_model(self, request, obj):
        folders.delete_folders([obj.identity])

    def delete_queryset(self, request, queryset):
        identities = list(queryset.values_list("identity", flat=True))
        if ROOT_FOLDER in identities:
            identities.remove(ROOT_FOLDER)
            self.message_user(request, self.ROOT_NOTE, messages.WARNING)
        if identities:
            folders.delete_folders(identities)
