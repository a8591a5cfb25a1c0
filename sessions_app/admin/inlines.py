"""The inline rows of the session page; each formset becomes ``set_*``-style ops, never saved directly."""

from django.contrib import admin
from django.utils.html import format_html

from rta_core.timeutil import format_duration, format_range, format_utc
from sessions_app.admin.forms.rows import (
    ConfigBindingForm,
    ConfigBindingFormSet,
    DataBindingForm,
    DataBindingFormSet,
    FolderLinkForm,
    FolderLinkFormSet,
    MarkerForm,
    MarkerFormSet,
    SessionRefForm,
    SessionRefFormSet,
)
from sessions_app.models import ConfigBinding, DataBinding, FolderLink, Marker, SessionRef


class ServiceInline(admin.TabularInline):
    """Inline rows that the session admin turns into ops of one service call."""

    extra = 0
    classes = ["rta-inline"]


class MarkerInline(ServiceInline):
    model = Marker
    form = MarkerForm
    formset = MarkerFormSet
    readonly_fields = ["when"]
    verbose_name = "marker"
    verbose_name_plural = "markers (laps and other annotated regions)"

    @admin.display(description="when (UTC)")
    def when(self, obj):
        if obj is None or obj.start_time is None:
            return "—"
        if obj.end_time is None:
            return format_utc(obj.start_time, with_date=False)
        span = format_range(obj.start_time, obj.end_time, zone="", with_date=False)
        return format_html("{}<br>{}", span, format_duration(obj.end_time - obj.start_time))


class ConfigBindingInline(ServiceInline):
    model = ConfigBinding
    form = ConfigBindingForm
    formset = ConfigBindingFormSet


class DataBindingInline(ServiceInline):
    model = DataBinding
    form = DataBindingForm
    formset = DataBindingFormSet
    classes = ["rta-inline", "collapse"]


class FolderLinkInline(ServiceInline):
    model = FolderLink
    form = FolderLinkForm
    formset = FolderLinkFormSet
    verbose_name = "folder"
    verbose_name_plural = "folders (a session left in no folder returns to the root)"


class SessionRefInline(ServiceInline):
    model = SessionRef
    form = SessionRefForm
    formset = SessionRefFormSet
    verbose_name = "reference"
    verbose_name_plural = "references (anchors, child of, alternate of)"
