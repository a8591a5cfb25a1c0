"""Admin for schema mappings: browse by source, search by identity, edit the mapping as JSON.

The form checks through ``config_app.services.schema_mappings`` (its errors
become form errors) and saving, deleting go through the same service, so the
admin follows the rules the gRPC SchemaMappingStore does. A mapping's page lists
the sessions whose data bindings use it.
"""

import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from config_app.admin.configs import sessions_for_display
from config_app.models import SchemaMapping
from config_app.services import schema_mappings
from rta_core.errors import ServiceError

# Sessions listed on a mapping's page (the rest are counted).
MAX_SESSIONS_SHOWN = 100
KEY_FIELDS = ("data_source", "data_identity")


class IndentedJSONField(forms.JSONField):
    """A JSON field shown indented, so a mapping reads (and diffs) one item per line."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2)


class SchemaMappingForm(forms.ModelForm):
    data_source = forms.CharField(max_length=schema_mappings.MAX_SOURCE_LENGTH, strip=False)
    data_identity = forms.CharField(
        max_length=schema_mappings.MAX_IDENTITY_LENGTH,
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"style": "width: 100%"}),
        help_text="The data binding's identity (private to the data service); may be empty.",
    )
    mapping = IndentedJSONField(
        widget=forms.Textarea(attrs={"rows": 28, "style": "width: 100%; font-family: monospace"}),
        help_text=(
            'An object with "properties" (strings), "field_mappings" (each: source_field, target_channel, '
            "properties, source_field_data_type, target_channel_data_type e.g. FLOAT32) and "
            '"event_mappings" (each: source_event, target_event_app, target_event_id, properties, '
            "source_event_data_fields)."
        ),
    )

    class Meta:
        model = SchemaMapping
        fields = ("data_source", "data_identity", "mapping")

    def _key(self):
        """The (source, identity) edited: typed in when adding, the stored one when changing."""
        return tuple(
            self.cleaned_data.get(name) if name in self.fields else getattr(self.instance, name) for name in KEY_FIELDS
        )

    def _error_field(self, field):
        if field in KEY_FIELDS and field in self.fields:
            return field
        if field and field.startswith("schema_mapping"):
            return "mapping"
        return None

    def clean(self):
        cleaned = super().clean()
        source, identity = self._key()
        if source is None or identity is None:
            return cleaned  # the field already has its error
        try:
            schema_mappings.checked_key(source, identity)
            if "mapping" in cleaned:
                cleaned["mapping"] = schema_mappings.checked_mapping(cleaned["mapping"])
        except ServiceError as exc:
            self.add_error(self._error_field(exc.field), exc.message)
            return cleaned
        if self.instance.pk is None and schema_mappings.has_schema_mapping(source, identity):
            self.add_error(None, "A schema mapping for this source and identity exists already: edit that one.")
        return cleaned


@admin.register(SchemaMapping)
class SchemaMappingAdmin(admin.ModelAdmin):
    form = SchemaMappingForm
    list_display = ("data_source", "identity_display", "field_count", "event_count", "session_count", "updated")
    list_filter = ("data_source",)
    search_fields = ("data_identity",)
    show_full_result_count = False

    def get_queryset(self, request):
        # Mappings may be large: the list needs none of them, a page loads its own when it reads it.
        return schema_mappings.with_session_counts(super().get_queryset(request)).defer("mapping")

    # --- list -----------------------------------------------------------------------------------

    @admin.display(description="data identity", ordering="data_identity")
    def identity_display(self, row):
        return row.data_identity if len(row.data_identity) <= 120 else row.data_identity[:119] + "…"

    @admin.display(description="sessions using it", ordering="session_count")
    def session_count(self, row):
        return row.session_count

    # --- add / change ---------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ("data_source", "data_identity", "mapping")})]
        if obj is not None:
            fieldsets += [
                ("Sessions whose data bindings use this mapping", {"fields": ("sessions_display",)}),
                ("Record", {"fields": ("field_count", "event_count", "created", "updated")}),
            ]
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = ("sessions_display", "field_count", "event_count", "created", "updated")
        # The pair is the mapping's key: a different pair is a different mapping (add it).
        return readonly + KEY_FIELDS if obj is not None else readonly

    def get_changeform_initial_data(self, request):
        return {"mapping": dict(schema_mappings.MAPPING_DEFAULTS), **super().get_changeform_initial_data(request)}

    @admin.display(description="sessions")
    def sessions_display(self, row):
        if row is None or row.pk is None:
            return "—"
        sessions = schema_mappings.bound_sessions(row.data_source, row.data_identity)
        total = sessions.count()
        if not total:
            return "No session's data bindings use it."
        shown = sessions_for_display(sessions[:MAX_SESSIONS_SHOWN])
        items = format_html_join(
            "",
            "<li>{}</li>",
            ((format_html('<a href="{}">{}</a>', s["url"], s["label"]) if s["url"] else s["label"],) for s in shown),
        )
        more = format_html("<li>… and {} more</li>", total - len(shown)) if total > len(shown) else ""
        return format_html('<p>{} session(s)</p><ul class="sessions">{}{}</ul>', total, items, more)

    def save_model(self, request, obj, form, change):
        row, _ = schema_mappings.put_schema_mapping(obj.data_source, obj.data_identity, form.cleaned_data["mapping"])
        for field in row._meta.concrete_fields:
            setattr(obj, field.attname, getattr(row, field.attname))

    # --- delete (through the service layer) -----------------------------------------------------

    def delete_model(self, request, obj):
        schema_mappings.delete_schema_mapping(obj.data_source, obj.data_identity)

    def delete_queryset(self, request, queryset):
        schema_mappings.delete_schema_mappings(queryset)
