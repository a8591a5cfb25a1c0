"""Form fields of the Session Service admin: JSON objects edited as text, and folder choices (root included)."""

import json

from django import forms
from django.core.exceptions import ValidationError

from sessions_app.models import ROOT_FOLDER, Folder
from sessions_app.services import folders


class PrettyJSONField(forms.JSONField):
    """A JSON value edited as indented text; empty text means ``{}``."""

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
        for node in folders.folder_tree().values():
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
