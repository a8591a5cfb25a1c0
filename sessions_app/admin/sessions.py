"""The session admin: the list (search, filters, actions) and the change page.

Every change goes through the service layer: the form and inline rows of one save become one
``create_or_update_session`` call (validation and the root re-linking of orphans apply as for gRPC),
and sessions are deleted with ``updates.delete_sessions``. Apps above sessions_app add panels to the
change page through ``panels``.
"""

from django.contrib import admin, messages
from django.db.models import BigIntegerField, ExpressionWrapper, F, TextField
from django.db.models.functions import Cast
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from rta_core.errors import InvalidArgument
from rta_core.timeutil import format_duration, format_range
from sessions_app.admin import display, panels
from sessions_app.admin.actions import close_sessions, link_to_folder, move_to_folder
from sessions_app.admin.forms import service_errors
from sessions_app.admin.forms.folders import FolderActionForm
from sessions_app.admin.forms.session import SessionForm
from sessions_app.admin.inlines import (
    ConfigBindingInline,
    DataBindingInline,
    FolderLinkInline,
    MarkerInline,
    SessionRefInline,
)
from sessions_app.models import ROOT_FOLDER, FolderLink, Session
from sessions_app.services import folders, listing, updates


class ServiceRejected(Exception):
    """The service refused an edit the forms had accepted."""


class FolderListFilter(admin.SimpleListFilter):
    """Sessions in a folder or any of its sub-folders (the scope ``folder=X`` has in the API)."""

    title = "folder (with sub-folders)"
    parameter_name = "folder"

    def lookups(self, request, model_admin):
        return [
            (node.identity, "\u2003" * (node.depth - 1) + node.name)
            for node in folders.folder_tree().values()
            if node.identity != ROOT_FOLDER
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        scope = folders.subtree_identities(value)
        return queryset.filter(identity__in=FolderLink.objects.filter(folder_id__in=scope).values("session_id"))


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
    actions = [close_sessions, link_to_folder, move_to_folder, "delete_selected"]

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
        return format_range(obj.start_time, obj.end_time, precision=0, zone="")

    @admin.display(description="duration", ordering="_duration")
    def duration(self, obj):
        if obj.start_time is None or obj.end_time is None:
            return "—"
        return format_duration(obj.end_time - obj.start_time)

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
            *(panel.render for panel in panels.registered()),
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
            ("Timeline", {"fields": ["timeline"], "classes": ["rta-panel", "rta-timeline-set"]}),
            *(
                (panel.title, {"fields": [panel.render], "classes": ["rta-panel", *panel.classes]})
                for panel in panels.registered()
            ),
            (None, {"fields": ["identity", "identifier", "state", "timestamp_text"]}),
            ("Classification", {"fields": ["type", "quality", "group", "version"]}),
            ("Time range", {"fields": ["time_range_text", ("start_time", "end_time")]}),
            ("Details", {"fields": ["details", "ext_details"]}),
            ("Relationships", {"fields": ["related_sessions"]}),
            ("Bookkeeping", {"fields": ["heartbeat", "last_sequence", "created", "updated"], "classes": ["collapse"]}),
        ]

    def get_urls(self):
        # Panels' URLs first: the default ``<path:object_id>/`` routes would swallow them.
        extra = [url for panel in panels.registered() if panel.urls for url in panel.urls(self)]
        return extra + super().get_urls()

    @admin.display(description="timeline")
    def timeline(self, obj):
        picture = display.timeline_svg(obj.start_time, obj.end_time, obj.markers.all())
        return picture or "No time range and no timed markers yet."

    @admin.display(description="time range")
    def time_range_text(self, obj):
        if obj.start_time is None or obj.end_time is None:
            return "No data yet (no time range)."
        return f"{format_range(obj.start_time, obj.end_time)}, {format_duration(obj.end_time - obj.start_time)}"

    @admin.display(description="related sessions")
    def related_sessions(self, obj):
        related = listing.related_sessions([obj.identity], parents=True).get(obj.identity) or {}
        titles = (("parents", "child or alternate of"), ("children", "children"), ("alternates", "alternates"))
        rows = [(title, related[key]) for key, title in titles if related.get(key)]
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
                updates.create_or_update_session(identity, ops, create=create)
        except InvalidArgument as exc:
            # The forms dry-run the same ops, so this is a race (another writer came between). Leaving the
            # admin's atomic block with an exception undoes everything, the history entry included.
            raise ServiceRejected(service_errors.message(exc)) from None
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
