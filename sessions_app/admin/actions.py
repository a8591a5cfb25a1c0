"""Actions of the session list: close sessions, link or move them into a folder (through the services)."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from sessions_app.admin.forms.fields import FolderChoiceField
from sessions_app.services import folders, updates


def _selected(queryset):
    return list(queryset.values_list("identity", flat=True))


@admin.action(description="Close selected sessions (state closed)", permissions=["change"])
def close_sessions(model_admin, request, queryset):
    closed, already = updates.close_sessions(_selected(queryset))
    text = f"Closed {closed} session{'s' if closed != 1 else ''}."
    if already:
        text += f" {already} {'was' if already == 1 else 'were'} already in a closed state."
    model_admin.message_user(request, text, messages.SUCCESS)


def _chosen_folder(model_admin, request):
    """The folder chosen in the action bar (``FolderActionForm``), or None after telling the user."""
    try:
        return FolderChoiceField(required=True).clean(request.POST.get("folder"))
    except ValidationError:
        model_admin.message_user(request, "Choose a folder in the box beside the action first.", messages.WARNING)
        return None


@admin.action(description="Link selected sessions into the chosen folder", permissions=["change"])
def link_to_folder(model_admin, request, queryset):
    folder = _chosen_folder(model_admin, request)
    if folder is not None:
        count = folders.link_sessions(_selected(queryset), folder.identity)
        model_admin.message_user(request, f"Linked {count} session(s) into {folder}.", messages.SUCCESS)


@admin.action(description="Move selected sessions to the chosen folder (only)", permissions=["change"])
def move_to_folder(model_admin, request, queryset):
    folder = _chosen_folder(model_admin, request)
    if folder is not None:
        count = folders.link_sessions(_selected(queryset), folder.identity, move=True)
        model_admin.message_user(request, f"Moved {count} session(s) to {folder}.", messages.SUCCESS)
