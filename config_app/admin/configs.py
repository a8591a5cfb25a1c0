"""Admin for configs and Advanced Streams dependencies.

Configs: read-only browsing, a readable view of JSON configs, delete (warning
about the sessions bound to the config) and a form to publish a new one.
Configs are immutable, so there is no change form; publishing and deleting go
through ``config_app.services.store`` like every other caller.
"""

from urllib.parse import quote as url_quote

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse

from config_app.models import Config, Dependency
from config_app.services import bindings, outline, store
from rta_core.errors import ServiceError

# JSON configs up to this size are shown as tables on their admin page.
OUTLINE_MAX_BYTES = 16 * 1024 * 1024


def session_admin_url(session):
    """The session's admin page, or None when sessions are not in the admin."""
    try:
        return reverse("admin:sessions_app_session_change", args=[quote(session.identity)])
    except NoReverseMatch:
        return None


def sessions_for_display(sessions):
    return [{"session": s, "identity": s.identity, "label": str(s), "url": session_admin_url(s)} for s in sessions]


def config_rest_url(identifier):
    """The REST URL serving ``identifier`` (every reserved character and dot percent-encoded)."""
    prefix = reverse("config", kwargs={"identifier": "-"})[:-1]
    return prefix + url_quote(identifier, safe="").replace(".", "%2E")


class PublishConfigForm(forms.Form):
    identifier = forms.CharField(max_length=store.MAX_IDENTIFIER_LENGTH, strip=False)
    content_type = forms.ChoiceField(choices=[(t, t) for t in store.CONTENT_TYPES])
    file = forms.FileField(help_text="The config bytes: JSON text or an FFC file.")


@admin.register(Config)
class ConfigAdmin(admin.ModelAdmin):
    list_display = ("identifier_display", "content_type", "size_display", "created", "session_count")
    list_filter = ("content_type", "created")
    search_fields = ("identifier",)
    date_hierarchy = "created"
    fields = ("identifier", "content_type", "size_display", "sha256", "created", "storage_name")
    readonly_fields = fields
    actions = ["delete_selected"]
    show_full_result_count = False

    # --- read-only: no add or change forms ----------------------------------------------------

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def can_publish(self, request):
        return super().has_add_permission(request)

    # --- list -----------------------------------------------------------------------------------

    def get_queryset(self, request):
        return bindings.with_session_counts(super().get_queryset(request))

    @admin.display(description="identifier", ordering="identifier")
    def identifier_display(self, config):
        return str(config)

    @admin.display(description="size", ordering="size")
    def size_display(self, config):
        return filesizeformat(config.size)

    @admin.display(description="sessions bound", ordering="session_count")
    def session_count(self, config):
        return config.session_count

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_publish": self.can_publish(request)}
        return super().changelist_view(request, extra_context)

    # --- detail ---------------------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        config = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if config is not None:
            extra.update(self._detail_context(config))
        return super().change_view(request, object_id, form_url, extra)

    def _detail_context(self, config):
        context = {
            "config": config,
            "rest_url": config_rest_url(config.identifier),
            "bound_sessions": sessions_for_display(bindings.bound_sessions(config.identifier)),
            "applications": None,
            "outline_note": "",
        }
        if not config.is_json:
            context["outline_note"] = "FFC configs are stored as opaque binary and cannot be shown here."
        elif config.size > OUTLINE_MAX_BYTES:
            context["outline_note"] = (
                f"This config is {filesizeformat(config.size)}; configs over "
                f"{filesizeformat(OUTLINE_MAX_BYTES)} are not shown here. Download it instead."
            )
        else:
            try:
                context["applications"] = outline.outline(store.read_document(config))
            except ServiceError as exc:
                context["outline_note"] = f"The stored document cannot be shown: {exc.message}"
        return context

    # --- delete (through the service layer, warning about bound sessions) -----------------------

    def delete_model(self, request, obj):
        store.delete_config(obj.identifier)

    def delete_queryset(self, request, queryset):
        store.delete_configs(queryset)

    def render_delete_form(self, request, context):
        config = context.get("object")
        if config is not None:
            context["bound_sessions"] = sessions_for_display(bindings.bound_sessions(config.identifier))
        return super().render_delete_form(request, context)

    @admin.action(permissions=["delete"], description="Delete selected configs")
    def delete_selected(self, request, queryset):
        response = admin_actions.delete_selected(self, request, queryset)
        if isinstance(response, TemplateResponse):
            configs = list(queryset)
            bound = bindings.bound_sessions_of([c.identifier for c in configs])
            response.context_data["bound_configs"] = [
                {"config": c, "sessions": sessions_for_display(bound[c.identifier])}
                for c in configs
                if bound[c.identifier]
            ]
        return response

    # --- publish --------------------------------------------------------------------------------

    def get_urls(self):
        publish = self.admin_site.admin_view(self.publish_view)
        return [path("publish/", publish, name="config_app_config_publish"), *super().get_urls()]

    def publish_view(self, request):
        if not self.can_publish(request):
            raise PermissionDenied
        form = PublishConfigForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            identifier = form.cleaned_data["identifier"]
            try:
                created = store.put_config_stream(
                    identifier, form.cleaned_data["content_type"], form.cleaned_data["file"].chunks()
                )
            except ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                if created:
                    messages.success(request, f"Published config {store.shown(identifier)}.")
                else:
                    messages.warning(
                        request,
                        f"Config {store.shown(identifier)} was already published; configs are immutable, "
                        "so nothing was changed.",
                    )
                return HttpResponseRedirect(reverse("admin:config_app_config_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Publish config",
            "opts": self.opts,
            "form": form,
            "max_identifier_length": store.MAX_IDENTIFIER_LENGTH,
        }
        return TemplateResponse(request, "admin/config_app/config/publish.html", context)


# --- Advanced Streams dependencies -----------------------------------------------------------


@admin.register(Dependency)
class DependencyAdmin(admin.ModelAdmin):
    """Advanced Streams dependencies: read-only (documents never change), deletable."""

    list_display = ("identifier", "type", "size", "created")
    list_filter = ("type", "created")
    search_fields = ("identifier",)
    fields = ("type", "identifier", "sha256", "size", "created", "document")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # publish through /api/dependencies or manage.py load_dependencies

    def has_change_permission(self, request, obj=None):
        return False
