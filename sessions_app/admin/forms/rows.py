"""Inline rows of the session page (markers, config and data bindings, folder links, refs) and their formsets.

A formset is never saved: what the administrator added, changed or deleted becomes ``delete_*`` /
``update_*`` ops that the session admin applies with the session form's ops in one call.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from rta_core.errors import InvalidArgument
from sessions_app.admin.forms import service_errors
from sessions_app.admin.forms.fields import FolderChoiceField, PrettyJSONField, json_textarea
from sessions_app.models import ConfigBinding, DataBinding, Folder, FolderLink, Marker, RefKind, SessionRef
from sessions_app.services import updates

# --- row forms -------------------------------------------------------------------------------


class MarkerForm(forms.ModelForm):
    details = PrettyJSONField(widget=json_textarea(rows=1, cols=16), indent=None)

    class Meta:
        model = Marker
        fields = ["marker_id", "category", "type", "label", "description", "start_time", "end_time", "details"]
        labels = {"marker_id": "Id", "start_time": "Start (ns)", "end_time": "End (ns)"}
        widgets = {
            "marker_id": forms.TextInput(attrs={"size": 8}),
            "category": forms.TextInput(attrs={"size": 7}),
            "type": forms.TextInput(attrs={"size": 6}),
            "label": forms.TextInput(attrs={"size": 10}),
            "description": forms.Textarea(attrs={"rows": 1, "cols": 14}),
            "start_time": forms.NumberInput(attrs={"style": "width:15em"}),
            "end_time": forms.NumberInput(attrs={"style": "width:15em"}),
        }

    @staticmethod
    def spec(c):
        return {
            "id": c["marker_id"],
            "category": c.get("category") or "",
            "type": c.get("type") or "",
            "label": c.get("label") or "",
            "description": c.get("description") or None,
            "start_time": c.get("start_time"),
            "end_time": c.get("end_time"),
            "details": c.get("details") or {},
        }


class ConfigBindingForm(forms.ModelForm):
    class Meta:
        model = ConfigBinding
        fields = ["identifier", "channel_offset"]
        widgets = {"identifier": forms.TextInput(attrs={"size": 50})}

    @staticmethod
    def spec(c):
        return {"identifier": c["identifier"], "channel_offset": c.get("channel_offset") or 0}


class DataBindingForm(forms.ModelForm):
    channel_bindings = forms.JSONField(
        required=False,
        widget=json_textarea(rows=2, cols=30),
        help_text='[{"first_data_channel": 0, "first_session_channel": 0, "last_session_channel": 9}]',
    )

    class Meta:
        model = DataBinding
        fields = [
            "source",
            "identity",
            "time_ref",
            "session_start_time",
            "session_end_time",
            "session_time_offset",
            "channel_bindings",
        ]
        labels = {"session_start_time": "Session start (ns)", "session_end_time": "Session end (ns)"}
        widgets = {
            "source": forms.TextInput(attrs={"size": 8}),
            "identity": forms.TextInput(attrs={"size": 16}),
            "time_ref": forms.NumberInput(attrs={"style": "width:15em"}),
            "session_start_time": forms.NumberInput(attrs={"style": "width:15em"}),
            "session_end_time": forms.NumberInput(attrs={"style": "width:15em"}),
            "session_time_offset": forms.NumberInput(attrs={"style": "width:9em"}),
        }

    @staticmethod
    def spec(c):
        return {
            "source": c.get("source") or "",
            "identity": c["identity"],
            "time_ref": c.get("time_ref") or 0,
            "session_start_time": c.get("session_start_time"),
            "session_end_time": c.get("session_end_time"),
            "session_time_offset": c.get("session_time_offset") or 0,
            "channel_bindings": c.get("channel_bindings") or [],
        }


class FolderLinkForm(forms.ModelForm):
    folder = FolderChoiceField(label="Folder")

    class Meta:
        model = FolderLink
        fields = ["folder"]

    @staticmethod
    def spec(c):
        return c["folder"].identity


class SessionRefForm(forms.ModelForm):
    class Meta:
        model = SessionRef
        fields = ["kind", "uri"]
        labels = {"uri": "URI"}
        widgets = {"uri": forms.TextInput(attrs={"size": 60})}

    @staticmethod
    def spec(c):
        return (c["kind"], c["uri"])


# --- formsets --------------------------------------------------------------------------------


class ServiceInlineFormSet(BaseInlineFormSet):
    """An inline formset whose changed rows become ``delete_*`` / ``update_*`` ops instead of being saved.

    Only what the administrator added, changed or deleted is sent, never the whole
    collection as the form showed it: items another writer added meanwhile (an ingest
    adding lap markers while the page was open) are kept. ``clean`` dry-runs the ops
    through the service and shows each error on the row (and field) it names.
    """

    COLLECTION = None  # the ops' collection name: "markers" -> update_markers / delete_markers
    FORM_FIELDS = {}  # item keys the service names differently from the row form's fields

    @staticmethod
    def key(values):
        """What ``delete_<collection>`` takes for a row, from its field values (cleaned or initial)."""
        raise NotImplementedError

    def changes(self):
        """``(rows to delete as keys, rows to add or update as (form, spec))``; rows with errors are left out."""
        deletes, upserts = [], []
        for form in self.forms:
            existing = form.instance.pk is not None
            if self.can_delete and self._should_delete_form(form):
                if existing:
                    deletes.append(self.key(form.initial))
                continue
            if not form.has_changed() or form.errors:
                continue
            upserts.append((form, form.spec(form.cleaned_data)))
            if existing and self.key(form.initial) != self.key(form.cleaned_data):
                deletes.append(self.key(form.initial))  # renamed: the old row goes
        return deletes, upserts

    def ops(self):
        deletes, upserts = self.changes()
        return self.ops_for(deletes, [spec for _, spec in upserts])

    def ops_for(self, deletes, specs):
        return ([(f"delete_{self.COLLECTION}", deletes)] if deletes else []) + (
            [(f"update_{self.COLLECTION}", specs)] if specs else []
        )

    def clean(self):
        refused = None
        try:
            super().clean()  # rows that repeat another row's key
        except ValidationError as exc:
            refused = exc
        if self.has_changed():
            self.check_with_service()
        if refused is not None:
            raise refused

    def check_with_service(self):
        """Dry-run the rows' ops; an error naming a row goes on that row, which is then left out and the rest
        checked again, so every refused row shows its error. An error naming no row refuses the formset."""
        for _ in range(len(self.forms) + 1):
            deletes, upserts = self.changes()
            ops = self.ops_for(deletes, [spec for _, spec in upserts])
            if not ops:
                return
            try:
                updates.check_session_update(ops)
                return
            except InvalidArgument as exc:
                found = service_errors.item(exc)
                if found is None or found[0] != self.COLLECTION or found[1] >= len(upserts):
                    raise service_errors.as_validation_error(exc) from None
                form = upserts[found[1]][0]
                field = self.FORM_FIELDS.get(found[2], found[2])
                form.add_error(field if field in form.fields else None, service_errors.message(exc))

    def record_changes(self):
        """Fill what ``formset.save()`` would have, for the admin's change message."""
        self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
        for form in self.forms:
            existing = form.instance.pk is not None
            if self.can_delete and self._should_delete_form(form):
                if existing:
                    self.deleted_objects.append(form.instance)
            elif existing and form.has_changed():
                self.changed_objects.append((form.instance, form.changed_data))
            elif not existing and form.has_changed():
                self.new_objects.append(form.instance)


class MarkerFormSet(ServiceInlineFormSet):
    COLLECTION = "markers"
    FORM_FIELDS = {"id": "marker_id"}

    @staticmethod
    def key(values):
        return values.get("marker_id")


class ConfigBindingFormSet(ServiceInlineFormSet):
    COLLECTION = "config_bindings"

    @staticmethod
    def key(values):
        return values.get("identifier")


class DataBindingFormSet(ServiceInlineFormSet):
    COLLECTION = "data_bindings"

    @staticmethod
    def key(values):
        return {
            "source": values.get("source") or "",
            "identity": values.get("identity"),
            "time_ref": values.get("time_ref") or 0,
        }


class FolderLinkFormSet(ServiceInlineFormSet):
    COLLECTION = "folders"

    @staticmethod
    def key(values):
        folder = values.get("folder")
        return folder.identity if isinstance(folder, Folder) else folder  # initial: the folder's key


class SessionRefFormSet(ServiceInlineFormSet):
    COLLECTIONS = {
        RefKind.ANCHOR: "ref_anchors",
        RefKind.CHILD_OF: "child_of_refs",
        RefKind.ALTERNATE_OF: "alternate_of_refs",
    }

    @staticmethod
    def key(values):
        return (RefKind(values.get("kind")), values.get("uri"))

    def ops_for(self, deletes, specs):
        out = []
        for verb, rows in (("delete", deletes), ("update", [(RefKind(k), uri) for k, uri in specs])):
            for kind, collection in self.COLLECTIONS.items():
                uris = [uri for row_kind, uri in rows if row_kind == kind]
                if uris:
                    out.append((f"{verb}_{collection}", uris))
        return out
