"""The session page for data that lives elsewhere: bindings served by a built-in source or a data service.

Such a session has no chunks in this server's index, so its overview comes
from its bound configs (the channels they describe, over the session's time
range) and its plot reads through the gateway, as a client would. A long
range is *sampled*: the plot reads up to ``WINDOWS`` short windows spread
evenly over it (each whole chunks, the gateway's rule), sized from the data
rate the first window shows, so a plot of an hour at 10 kHz reads a few
hundred thousand samples, not 36 million.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.admin.utils import quote
from django.urls import NoReverseMatch, reverse

from config_app.models import SchemaMapping
from config_app.services import schema_mappings
from data_app.services import gateway
from data_app.services.channels import ChannelSet
from data_app.sources import registry
from rta_core.errors import InvalidArgument, ServiceError
from rta_kit import wire
from sessions_app.models import DataBinding, Session

WINDOWS = 100  # windows a long range is sampled at


@dataclass(frozen=True)
class Placement:
    """Where one binding's data lives, for the session page."""

    source: str
    identity: str
    where: str  # "built-in source", "data service", "this server's chunk store"
    mapping_url: str  # the schema mapping's admin page ("" when none is stored)
    mapped_fields: int | None


def _where(source):
    if source in registry.configured():
        return "built-in source"
    if source in settings.RTA_DATA_SERVICES:
        return "data service"
    return "this server's chunk store"


def placements(identity):
    """Where each of the session's data bindings reads its data from (one query for their mappings)."""
    keys = list(DataBinding.objects.filter(session_id=identity).values_list("source", "identity"))
    hashes = {key: _mapping_hash(key) for key in keys}
    rows = {row.key_hash: row for row in SchemaMapping.objects.filter(key_hash__in=hashes.values())}
    out = []
    for source, data_identity in keys:
        row = rows.get(hashes[(source, data_identity)])
        url = ""
        if row is not None:
            try:
                url = reverse("admin:config_app_schemamapping_change", args=[quote(row.pk)])
            except NoReverseMatch:
                url = ""
        fields = row.field_count if row is not None else None
        out.append(Placement(source, data_identity, _where(source), url, fields))
    return out


def _mapping_hash(key):
    """The mapping key hash of a binding's ``(source, identity)``; None for a key no mapping can have (a
    binding of this server's own store has the empty source)."""
    try:
        return schema_mappings.key_hash(*key)
    except InvalidArgument:
        return None


def is_composed(identity):
    """Whether any binding of the session is read from a built-in source or a data service."""
    sources = set(registry.configured()) | set(settings.RTA_DATA_SERVICES)
    return bool(sources) and DataBinding.objects.filter(session_id=identity, source__in=sources).exists()


def summary_channels(identity, labels, summary_type):
    """Channel rows from the bound configs' channels, over the session's time range (no counts: not read)."""
    session = Session.objects.filter(identity=identity).values("start_time", "end_time").first()
    if not session or session["start_time"] is None or session["end_time"] is None:
        return []
    rows = []
    for channel, label in sorted(labels.items()):
        kind = label.source if label.source in ("periodic", "timestamped") else "timestamped"
        rows.append(
            summary_type(kind, channel, [channel], 0, 0, session["start_time"], session["end_time"], 0, 0, label)
        )
    return rows


def chunks(identity, kind, channel, start, end):
    """The session's chunks of one channel over ``[start, end]``, read through the gateway."""
    stream = gateway.open_session_data(identity, kind, ChannelSet([(channel, channel)]), start, end)
    if isinstance(stream, gateway.GatewayStream):
        stream.start(asgi=False)
    try:
        return wire.read_chunks(b"".join(stream))
    finally:
        stream.close()


def sampled_chunks(identity, kind, channel, lo, hi, budget):
    """Chunks of one channel over ``[lo, hi]``: all of them, or evenly spread windows when that is too many.

    The first window is read whole to learn the data's rate; a source that fails gives an empty trace.
    """
    step = max(1, (hi - lo + 1) // WINDOWS)
    try:
        first = chunks(identity, kind, channel, lo, min(hi, lo + step - 1))
        counts = [_samples(c, kind) for c in first]
        samples = sum(counts)
        # Read whole when it fits, or when whole chunks per window would cost about as much anyway.
        if samples * WINDOWS <= budget or max(counts, default=0) * 2 >= samples or lo + step > hi:
            windows = [(lo + step, hi)] if lo + step <= hi else []
        else:
            length = max(1, step * max(1, budget // WINDOWS) // max(samples, 1))
            windows = [(a, min(hi, a + length - 1)) for a in range(lo + step, hi + 1, step)][: WINDOWS - 1]
        out, seen = [], set()
        for part in [first, *(chunks(identity, kind, channel, a, b) for a, b in windows)]:
            for chunk in part:
                if (chunk.start, chunk.end) not in seen:  # a chunk two windows overlap is read twice
                    seen.add((chunk.start, chunk.end))
                    out.append(chunk)
        return out
    except ServiceError:
        return []


def _samples(chunk, kind):
    message = chunk.decode(kind)
    if kind == "periodic":
        return sum(item.samples for item in message.periodic_data)
    return sum(len(item.timestamp_deltas) for item in message.timestamped_data)
