"""The session form: the session's own properties, as ``create_or_update_session`` ops."""

import json
import uuid

from django import forms
from django.core.exceptions import ValidationError

from rta_core.errors import InvalidArgument
from rta_core.timeutil import now_timestamp, parse_timestamp
from sessions_app.admin.forms import service_errors
from sessions_app.admin.forms.fields import PrettyJSONField, json_textarea
from sessions_app.models import Session
from sessions_app.services import updates, values

# Session properties the service names differently from this form's fields.
FORM_FIELDS = {"timestamp": "timestamp_text"}


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

    # -- field by field, with the service's value rules (so that every wrong field shows at once)

    def clean_timestamp_text(self):
        text = (self.cleaned_data.get("timestamp_text") or "").strip()
        try:
            parse_timestamp(text)
        except InvalidArgument as exc:
            raise service_errors.as_validation_error(exc) from None
        return text

    def clean_details(self):
        value = self.cleaned_data.get("details")
        if value is None:
            return {}
        try:
            return values.validate_details(value, "details")
        except InvalidArgument as exc:
            raise service_errors.as_validation_error(exc) from None

    def clean_ext_details(self):
        value = self.cleaned_data.get("ext_details")
        if value is None:
            return {}
        # The form edits extDetails whole; the ops name one group each (a blank one would mean details).
        if not isinstance(value, dict):
            raise ValidationError("extDetails must be an object of groups.")
        out = {}
        errors = []
        for group, details in value.items():
            if group == "":
                errors.append(ValidationError("extDetails: group names must be non-empty."))
                continue
            try:
                out[group] = values.validate_details(details, f"extDetails.{group}")
            except InvalidArgument as exc:
                errors.append(service_errors.as_validation_error(exc))
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
            raise service_errors.as_validation_error(exc) from None

    # -- the edit as a whole: the service judges the ops

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start_time"), cleaned.get("end_time")
        # One op sets both ends; half a range cannot be said.
        if "start_time" not in self.errors and "end_time" not in self.errors and (start is None) != (end is None):
            self.add_error("end_time" if end is None else "start_time", "Give both ends of the time range, or neither.")
        if not self.errors:
            ops, create = self.session_ops()
            if ops or create:
                try:
                    updates.check_session_update(ops, create=create)
                except InvalidArgument as exc:
                    self.add_error(self._form_field(exc), service_errors.message(exc))
        return cleaned

    def _form_field(self, exc):
        name = service_errors.property_name(exc)
        name = FORM_FIELDS.get(name, name)
        return name if name in self.fields else None

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
