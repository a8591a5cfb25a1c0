"""What the embedded authority puts in a client's or user's tokens beyond django-oauth-toolkit's own fields."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import Application


class ClientAccess(models.Model):
    """The scopes a client may be granted and, optionally, the folders its tokens are limited to."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="rta_access")
    scopes = models.CharField(max_length=255, help_text="Space-separated scopes the client may be granted.")
    folders = models.JSONField(
        null=True,
        blank=True,
        help_text="Folder identities the client's tokens are limited to (their sub-trees); "
        "empty: none. Leave blank for no restriction. Used when RTA_AUTH_FOLDERS_CLAIM is set.",
    )

    class Meta:
        verbose_name = "client access"
        verbose_name_plural = "client access"

    def __str__(self):
        return f"{self.application}: {self.scopes}"

    def clean(self):
        _check_folders(self.folders, allow_none=True)


class UserFolders(models.Model):
    """The folders tokens issued for a user (authorization code flow) are limited to."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rta_folders")
    folders = models.JSONField(default=list, blank=True, help_text="Folder identities (their sub-trees).")

    class Meta:
        verbose_name = "user folders"
        verbose_name_plural = "user folders"

    def __str__(self):
        return f"{self.user}: {', '.join(self.folders) or '(none)'}"

    def clean(self):
        _check_folders(self.folders, allow_none=False)


def _check_folders(folders, allow_none):
    if folders is None and allow_none:
        return
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise ValidationError({"folders": 'a JSON list of folder identities, e.g. ["Team A", "Partners/X"]'})
