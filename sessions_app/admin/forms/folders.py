"""The folder form, and the folder box of the session list's action bar."""

from django import forms
from django.contrib.admin.helpers import ActionForm

from rta_core.errors import InvalidArgument
from sessions_app.admin.forms import service_errors
from sessions_app.admin.forms.fields import FolderChoiceField
from sessions_app.models import ROOT_FOLDER, Folder
from sessions_app.services import folders


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
            # A folder cannot move under itself or its own sub-tree: not offered.
            self.fields["parent"].exclude = set(folders.subtree_identities(self.instance.identity))
        if "identity" in self.fields:
            self.fields["identity"].required = True

    def clean(self):
        cleaned = super().clean()
        identity = cleaned.get("identity", self.instance.identity)
        parent = cleaned.get("parent")
        if not self.errors and identity and parent is not None:
            try:
                folders.check_folder(parent.identity, identity, cleaned.get("label"), cleaned.get("description"))
            except InvalidArgument as exc:
                raise service_errors.as_validation_error(exc) from None
        return cleaned


class _ActionFolderField(FolderChoiceField):
    """Passes the raw choice through: the folder actions check it and say what is wrong, where a
    failing action form would only report "No action selected"."""

    def clean(self, value):
        return value


class FolderActionForm(ActionForm):
    """The admin action bar with a folder to link or move selected sessions to."""

    folder = _ActionFolderField(label="folder:", required=False, empty_label="(folder for link / move)")
