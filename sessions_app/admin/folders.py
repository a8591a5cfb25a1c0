"""The folder admin: the folder tree as a list, with session counts; saved and deleted through the service.

Folders are saved with ``folders.put_folder`` and deleted with ``folders.delete_folders`` (which
re-links orphaned sessions to the root). The root folder cannot be changed or deleted.
"""

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Case, Count, IntegerField, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from sessions_app.admin import display
from sessions_app.admin.forms.folders import FolderForm
from sessions_app.models import ROOT_FOLDER, Folder, FolderLink, Session
from sessions_app.services import folders as folder_service

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
        tree = folder_service.folder_tree()
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
        folder_service.put_folder(
            parent.identity if parent is not None else ROOT_FOLDER,
            obj.identity,
            form.cleaned_data.get("label", obj.label),
            form.cleaned_data.get("description", obj.description),
        )

    def save_related(self, request, form, formsets, change):
        """Folders have no inlines or many-to-many fields."""

    def delete_model(self, request, obj):
        folder_service.delete_folders([obj.identity])

    def delete_queryset(self, request, queryset):
        identities = list(queryset.values_list("identity", flat=True))
        if ROOT_FOLDER in identities:
            identities.remove(ROOT_FOLDER)
            self.message_user(request, self.ROOT_NOTE, messages.WARNING)
        if identities:
            folder_service.delete_folders(identities)
