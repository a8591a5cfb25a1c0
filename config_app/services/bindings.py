"""Sessions bound to configs (``sessions_app.ConfigBinding`` rows name configs by identifier)."""

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from sessions_app.models import ConfigBinding, Session


def bound_sessions(identifier):
    """Sessions that bind the config ``identifier``, most recent first."""
    return (
        Session.objects.filter(config_bindings__identifier=identifier).distinct().order_by("-timestamp_ns", "identity")
    )


def bound_sessions_of(identifiers):
    """``{identifier: [session, ...]}`` for several configs (one query)."""
    result = {identifier: [] for identifier in identifiers}
    bindings = (
        ConfigBinding.objects.filter(identifier__in=list(identifiers))
        .select_related("session")
        .order_by("-session__timestamp_ns", "session__identity")
    )
    for binding in bindings:
        result[binding.identifier].append(binding.session)
    return result


def with_session_counts(configs):
    """Annotate a Config queryset with ``session_count``: the sessions bound to each config."""
    counts = (
        ConfigBinding.objects.filter(identifier=OuterRef("identifier"))
        .order_by()
        .values("identifier")
        .annotate(n=Count("session", distinct=True))
        .values("n")
    )
    return configs.annotate(session_count=Coalesce(Subquery(counts, output_field=IntegerField()), Value(0)))
