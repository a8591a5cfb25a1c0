"""Forms and inline formsets of the Session Service admin.

The forms validate with the service layer's own rules (``services.values`` and a
rolled-back dry run of the ops through ``create_or_update_session``) and turn
what was edited into the ``(op, argument)`` list that the admin then applies in
one ``create_or_update_session`` call. Inline formsets are never saved directly.
"""

import json
import uuid

from django import forms
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from rta_core.errors import InvalidArgument
from rta_core.timeutil import now_timestamp, parse_timestamp
from sessions_app.models import (
    ROOT_FOLDER,
    ConfigBinding,
    DataBinding,
    Folder,
    FolderLink,
    Marker,
    RefKind,
    Session,
    SessionRef,
)
from sessions_app.services import admin_ops, values

# --- fields ----------------------------------------------------------------------------------


class PrettyJSONField(forms.JSONField):
    """A JSON object edited as indented text; empty text means ``{}``."""

    def __init__(self, *args, indent=2, **kwargs):
        kwargs.setdefault("required", False)
        self.indent = indent
        super().__init__(*args, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if value in (None, ""):
            value = {}
        if isinstance(value, dict) and not value:
            return "{}"
        return json.dumps(value, ensure_ascii=False, indent=self.indent, sort_keys=False)


def json_textarea(rows=8, cols=70):
    return forms.Textarea(attrs={"rows": rows, "cols": cols, "class": "rta-json", "spellcheck": "false"})


class FolderChoiceField(forms.Field):
    """Choose a folder, the root included.

    ``ModelChoiceField`` cannot offer the root (its identity is the empty string, which a form
    treats as "nothing chosen"), so options carry the identity behind an ``f:`` prefix; the root is
    ``f:``. ``to_python`` gives the identity (``None`` for no choice); ``clean`` gives the Folder.
    Options are listed in tree order and labelled with their path.
    """

    PREFIX = "f:"
    widget = forms.Select

    def __init__(self, *, include_root=True, root_label="(root)", empty_label="---------", exclude=(), **kwargs):
        self.include_root, self.root_label, self.empty_label = include_root, root_label, empty_label
        self.exclude = set(exclude)
        super().__init__(**kwargs)

    def __deepcopy__(self, memo):
        result = super().__deepcopy__(memo)
        result.exclude = set(self.exclude)
        return result

    def choices(self):
        out = [("", self.empty_label)] if self.empty_label is not None else []
        for node in admin_ops.folder_tree().values():
            if node.identity in self.exclude or (node.identity == ROOT_FOLDER and not self.include_root):
                continue
            out.append((self.PREFIX + node.identity, node.path or self.root_label))
        return out

    def get_bound_field(self, form, field_name):
        # Choices are computed when the form is rendered, so new folders appear at once.
        self.widget.choices = _LazyChoices(self)
        return super().get_bound_field(form, field_name)

    def prepare_value(self, value):
        if value is None:
            return ""
        if isinstance(value, Folder):
            return self.PREFIX + value.identity
        value = str(value)
        return value if value.startswith(self.PREFIX) else self.PREFIX + value

    def to_python(self, value):
        if isinstance(value, Folder):
            return value.identity
        if value in (None, ""):
            return None
        value = str(value)
        if not value.startswith(self.PREFIX) or "\x00" in value:
            raise ValidationError("Select a valid folder.", code="invalid_choice")
        return value[len(self.PREFIX) :]

    def validate(self, value):
        if value is None and self.required:
            raise ValidationError(self.error_messages["required"], code="required")
        if value == ROOT_FOLDER and not self.include_root:
            raise ValidationError("The root folder cannot be chosen here.", code="invalid_choice")
        if value in self.exclude:
            raise ValidationError("This folder cannot be chosen here.", code="invalid_choice")

    def clean(self, value):
        identity = super().clean(value)
        if identity is None:
            return None
        folder = Folder.objects.filter(identity=identity).first()
        if folder is None:
            raise ValidationError(f"Folder {identity!r} does not exist.", code="invalid_choice")
        return folder

    def has_changed(self, initial, data):
        # Unlike Field.has_changed, None (nothing) and "" (the root) are different.
        try:
            data = self.to_python(data)
        except ValidationError:
            return True
        if isinstance(initial, Folder):
            initial = initial.identity
        return initial != data


class _LazyChoices:
    def __init__(self, field):
        self.field = field

    def __iter__(self):
        return iter(self.field.choices())


# --- the session form ------------------------------------------------------------------------

SCALAR_FIELDS = ("identifier", "state", "timestamp_text", "type", "quality", "group", "version")


class SessionForm(forms.ModelForm):
    details = PrettyJSONField(
        widget=json_textarea(),
        help_text="A flat JSON object of string, number, integer or boolean values (no nesting, no null).",
    )
    ext_details = PrettyJSONField(
        label="extDetails",
        widget=json_textarea(),
        help_text='Groups of details: {"Group": {"Key": value, ...}, ...}; each group is a flat object.',
    )

    class Meta:
        model = Session
        fields = [
            "identity",
            "identifier",
            "state",
            "timestamp_text",
            "type",
            "quality",
            "group",
            "version",
            "start_time",
            "end_time",
            "details",
            "ext_details",
        ]
        labels = {"timestamp_text": "Timestamp", "start_time": "Start time (ns)", "end_time": "End time (ns)"}
        help_texts = {
            "timestamp_text": "ISO 8601 with zone offset, e.g. 2024-05-20T14:00:00.5+01:00 (no zone means UTC).",
            "identity": "Any string, unique; a UUID is best.",
            "start_time": "Nanoseconds since the Unix epoch (UTC), inclusive.",
            "end_time": "Nanoseconds since the Unix epoch (UTC), inclusive.",
            "quality": "0.0 to 1.0.",
        }
        widgets = {
            "identity": forms.TextInput(attrs={"size": 50}),
            "identifier": forms.TextInput(attrs={"size": 50}),
            "timestamp_text": forms.TextInput(attrs={"size": 40}),
            "start_time": forms.NumberInput(attrs={"style": "width:15em"}),
            "end_time": forms.NumberInput(attrs={"style": "width:15em"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adding = self.instance._state.adding
        if self.adding and not self.is_bound:
            self.initial.setdefault("identity", str(uuid.uuid4()))
            self.initial.setdefault("timestamp_text", now_timestamp().text)
        if "identity" in self.fields:
            self.fields["identity"].required = True
        if "identifier" in self.fields:
            self.fields["identifier"].required = not self.adding
            if self.adding:
                self.fields["identifier"].help_text = "Defaults to the identity."

    # -- field validation with the service's rules

    @staticmethod
    def _service_error(exc):
        return ValidationError(admin_ops.service_message(exc))

    def clean_timestamp_text(self):
        text = (self.cleaned_data.get("timestamp_text") or "").strip()
        try:
            parse_timestamp(text)
        except InvalidArgument as exc:
            raise self._service_error(exc) from None
        return text

    def clean_details(self):
        value = self.cleaned_data.get("details")
        if value is None:
            return {}
        try:
            return values.validate_details(value, "details")
        except InvalidArgument as exc:
            raise self._service_error(exc) from None

    def clean_ext_details(self):
        value = self.cleaned_data.get("ext_details")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValidationError("extDetails must be an object of groups.")
        out = {}
        errors = []
        for group, details in value.items():
            if group == "":
                errors.append(ValidationError("extDetails: group names must be non-empty."))
                continue
            if not isinstance(details, dict):
                errors.append(ValidationError(f"extDetails.{group} must be an object (a flat map of details)."))
                continue
            try:
                out[group] = values.validate_details(details, f"extDetails.{group}")
            except InvalidArgument as exc:
                errors.append(self._service_error(exc))
        if errors:
            raise ValidationError(errors)
        return out

    def clean_quality(self):
        value = self.cleaned_data.get("quality")
        if value is None:
            return None
        try:
            return values.validate_quality(value)
        except InvalidArgument as exc:
            raise self._service_error(exc) from None

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start_time"), cleaned.get("end_time")
        if "start_time" not in self.errors and "end_time" not in self.errors:
            if (start is None) != (end is None):
                missing = "end_time" if end is None else "start_time"
                self.add_error(missing, "Give both ends of the time range, or neither.")
            elif start is not None and start > end:
                self.add_error("end_time", "The time range ends before it starts.")
        ops, create = self.session_ops() if not self.errors else ([], None)
        if ops or create:
            try:
                admin_ops.check_ops(ops, create=create)
            except InvalidArgument as exc:
                raise self._service_error(exc) from None
        return cleaned

    # -- what the edit means, as service ops

    def _changed(self, name):
        return self.adding or name in self.changed_data

    def session_ops(self):
        """``(ops, create)`` for this form: the ops of every changed property, and for a new
        session the ``create`` argument of ``create_or_update_session``."""
        c = self.cleaned_data
        ops = []
        create = None
        if self.adding:
            create = {
                "state": c.get("state"),
                "timestamp": c.get("timestamp_text"),
                "identifier": c.get("identifier") or c.get("identity"),
            }
        else:
            if self._changed("identifier"):
                ops.append(("set_identifier", c.get("identifier")))
            if self._changed("state"):
                ops.append(("set_state", c.get("state")))
            if self._changed("timestamp_text"):
                ops.append(("set_timestamp", c.get("timestamp_text")))
        if self._changed("start_time") or self._changed("end_time"):
            start, end = c.get("start_time"), c.get("end_time")
            if start is not None and end is not None:
                ops.append(("set_time_range", (start, end)))
            elif not self.adding:
                ops.append(("clear_time_range", None))
        for name in ("type", "group", "version"):
            if self._changed(name):
                value = c.get(name)
                if value not in (None, ""):
                    ops.append((f"set_{name}", value))
                elif not self.adding:
                    ops.append((f"clear_{name}", None))
        if self._changed("quality"):
            if c.get("quality") is not None:
                ops.append(("set_quality", c.get("quality")))
            elif not self.adding:
                ops.append(("clear_quality", None))
        if self._changed("details") and (c.get("details") or not self.adding):
            ops.append(("set_details", {"details": c.get("details") or {}}))
        if self._changed("ext_details"):
            before = {} if self.adding else (self.initial.get("ext_details") or {})
            after = c.get("ext_details") or {}
            for group in list(dict.fromkeys([*before, *after])):
                if before.get(group) != after.get(group):
                    # An empty group removes it (set_details_json with "{}").
                    ops.append(("set_details_json", {"category": group, "json": json.dumps(after.get(group, {}))}))
        return ops, create


# --- inline forms and formsets ---------------------------------------------------------------


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

    def clean_details(self):
        value = self.cleaned_data.get("details")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValidationError("Marker details must be a JSON object.")
        return value

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start_time"), cleaned.get("end_time")
        if start is not None and end is not None and start > end:
            self.add_error("end_time", "The marker ends before it starts.")
        return cleaned

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


CHANNEL_KEYS = ("first_data_channel", "first_session_channel", "last_session_channel")


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

    def clean_channel_bindings(self):
        value = self.cleaned_data.get("channel_bindings")
        if value in (None, ""):
            return []
        if not isinstance(value, list):
            raise ValidationError("Channel bindings must be a JSON list of objects.")
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise ValidationError(f"Channel binding {index} must be an object.")
            for key in CHANNEL_KEYS:
                v = item.get(key, 0)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValidationError(f"Channel binding {index}: {key} must be a non-negative integer.")
            unknown = set(item) - set(CHANNEL_KEYS)
            if unknown:
                raise ValidationError(f"Channel binding {index}: unknown keys {', '.join(sorted(unknown))}.")
        return value

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("session_start_time"), cleaned.get("session_end_time")
        if start is not None and end is not None and start > end:
            self.add_error("session_end_time", "The binding ends before it starts.")
        return cleaned

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


class ServiceInlineFormSet(BaseInlineFormSet):
    """An inline formset whose changed rows become ``delete_*`` / ``update_*`` ops instead of being saved.

    Only what the administrator added, changed or deleted is sent, never the whole
    collection as the form showed it: items another writer added meanwhile (an ingest
    adding lap markers while the page was open) are kept. ``clean`` dry-runs the ops
    through the service so its rules show up as formset errors.
    """

    COLLECTION = None  # the ops' collection name: "markers" -> update_markers / delete_markers

    @staticmethod
    def key(values):
        """What ``delete_<collection>`` takes for a row, from its field values (cleaned or initial)."""
        raise NotImplementedError

    def changes(self):
        """``(rows to delete as keys, rows to add or update as specs)``."""
        deletes, upserts = [], []
        for form in self.forms:
            existing = form.instance.pk is not None
            if self.can_delete and self._should_delete_form(form):
                if existing:
                    deletes.append(self.key(form.initial))
                continue
            if not form.has_changed():
                continue
            upserts.append(form.spec(form.cleaned_data))
            if existing and self.key(form.initial) != self.key(form.cleaned_data):
                deletes.append(self.key(form.initial))  # renamed: the old row goes
        return deletes, upserts

    def ops(self):
        deletes, upserts = self.changes()
        return ([(f"delete_{self.COLLECTION}", deletes)] if deletes else []) + (
            [(f"update_{self.COLLECTION}", upserts)] if upserts else []
        )

    def clean(self):
        super().clean()
        if any(self.errors) or not self.has_changed():
            return
        try:
            admin_ops.check_ops(self.ops())
        except InvalidArgument as exc:
            raise ValidationError(admin_ops.service_message(exc)) from None

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

    def ops(self):
        deletes, upserts = self.changes()
        out = []
        for verb, rows in (("delete", deletes), ("update", [(RefKind(k), uri) for k, uri in upserts])):
            for kind, collection in self.COLLECTIONS.items():
                uris = [uri for row_kind, uri in rows if row_kind == kind]
                if uris:
                    out.append((f"{verb}_{collection}", uris))
        return out


# --- folders ---------------------------------------------------------------------------------


class FolderForm(forms.ModelForm):
    parent = FolderChoiceField(label="Parent", empty_label=None, required=True)

    class Meta:
        model = Folder
        fields = ["identity", "parent", "label", "description"]
        help_texts = {
            "identity": "Any non-empty string; it cannot be changed later.",
            "parent": "Moving a folder moves its whole sub-tree.",
        }
        widgets = {"identity": forms.TextInput(attrs={"size": 50}), "label": forms.TextInput(attrs={"size": 50})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound and self.initial.get("parent") is None:
            self.initial["parent"] = ROOT_FOLDER
        if "parent" in self.fields and not self.instance._state.adding:
            # A folder cannot move under itself or its own sub-tree.
            from sessions_app.services.folders import subtree_identities

            self.fields["parent"].exclude = set(subtree_identities(self.instance.identity))
        if "identity" in self.fields:
            self.fields["identity"].required = True

    def clean_identity(self):
        identity = self.cleaned_data.get("identity")
        if identity in (None, ROOT_FOLDER):
            raise ValidationError("The root folder (empty identity) cannot be created or changed.")
        return identity

    def clean(self):
        cleaned = super().clean()
        identity = cleaned.get("identity", self.instance.identity)
        parent = cleaned.get("parent")
        if not self.errors and identity and parent is not None:
            try:
                admin_ops.check_folder(parent.identity, identity, cleaned.get("label"), cleaned.get("description"))
            except InvalidArgument as exc:
                raise ValidationError(admin_ops.service_message(exc)) from None
        return cleaned


class _ActionFolderField(FolderChoiceField):
    """Passes the raw choice through: the folder actions check it and say what is wrong, where a
    failing action form would only report "No action selected"."""

    def clean(self, value):
        return value


class FolderActionForm(ActionForm):
    """The admin action bar with a folder to link or move selected sessions to."""

    folder = _ActionFolderField(label="folder:", required=False, empty_label="(folder for link / move)")
