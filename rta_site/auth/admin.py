"""The embedded authority's clients in the admin: django-oauth-toolkit's own pages, with scopes and folders."""

from django.contrib import admin
from oauth2_provider.models import get_application_model

from rta_site.auth.models import ClientAccess, UserFolders

Application = get_application_model()


class ClientAccessInline(admin.StackedInline):
    model = ClientAccess
    can_delete = False
    extra = 0
    max_num = 1


_application_admin = type(admin.site._registry[Application]) if admin.site.is_registered(Application) else None
if _application_admin is not None:
    admin.site.unregister(Application)

    @admin.register(Application)
    class ApplicationAdmin(_application_admin):
        inlines = [*getattr(_application_admin, "inlines", []), ClientAccessInline]


@admin.register(UserFolders)
class UserFoldersAdmin(admin.ModelAdmin):
    list_display = ["user", "folders"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]
