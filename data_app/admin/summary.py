"""What data a session holds: per kind and channel, aggregated in SQL from the chunk index,
plus the channel names, units and conversions its bound JSON configs give.

Used by the admin's session page and the data plot; no chunk is read here.
"""

from dataclasses import dataclass, field

from django.db.models import Count, Max, Min, Sum

from config_app.models import JSON_CONTENT_TYPE
from config_app.services import outline, store
from data_app.admin import composed
from data_app.models import Chunk
from rta_core.errors import ServiceError
from sessions_app.models import ConfigBinding

KIND_ORDER = {"periodic": 0, "timestamped": 1, "row": 2, "events": 3}
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # larger configs are not parsed for labels (the admin stays fast)


@dataclass(frozen=True)
class ChannelLabel:
    """How a bound config describes one session channel (``channel`` is after the binding's offset)."""

    channel: int
    name: str
    description: str = ""
    unit: str = ""
    type: str = ""  # u8 s8 u16 s16 u32 s32 f32 f64 (blank: unknown)
    source: str = ""
    coeffs: tuple = ()  # rational conversion coefficients, when the parameter has one
    config: str = ""

    def linear_conversion(self):
        """``(gain, offset)`` when the rational conversion is a plain linear map, else None.

        eng = (c1 raw^2 + c2 raw + c3) / (c4 raw^2 + c5 raw + c6) is linear when c1 = c4 = c5 = 0.
        """
        if len(self.coeffs) != 6:
            return None
        c1, c2, c3, c4, c5, c6 = self.coeffs
        if c1 or c4 or c5 or not c6:
            return None
        return c2 / c6, c3 / c6


@dataclass
class ChannelSummary:
    kind: str
    channel: int  # channel id; a channel-set key for row data; 0 for events
    channel_ids: list
    chunks: int
    samples: int
    start: int
    end: int
    stored_bytes: int
    unpacked_bytes: int
    label: ChannelLabel = None

    @property
    def duration(self):
        return self.end - self.start

    @property
    def name(self):
        if self.kind == "events":
            return "events"
        if self.label is not None:
            return self.label.name
        if self.kind == "row":
            return (
                "row set "
                + ",".join(f"{c:x}" for c in self.channel_ids[:6])
                + ("…" if len(self.channel_ids) > 6 else "")
            )
        return f"channel {self.channel:x}"

    @property
    def plottable(self):
        return self.kind in ("periodic", "timestamped")

    @property
    def bytes_per_sample(self):
        return self.stored_bytes / self.samples if self.samples else 0.0

    @property
    def rate_hz(self):
        """Mean sample rate over the channel's span (None for a single instant)."""
        if self.samples < 2 or self.end <= self.start:
            return None
        return (self.samples - 1) * 1e9 / (self.end - self.start)


@dataclass
class DataSummary:
    identity: str
    channels: list = field(default_factory=list)
    composed: bool = False  # read through the gateway (built-in sources, data services): no counts

    @property
    def empty(self):
        return not self.channels

    def _total(self, attr, kind=None):
        return sum(getattr(c, attr) for c in self.channels if kind is None or c.kind == kind)

    @property
    def samples(self):
        return self._total("samples")

    @property
    def stored_bytes(self):
        return self._total("stored_bytes")

    @property
    def unpacked_bytes(self):
        return self._total("unpacked_bytes")

    @property
    def chunks(self):
        return self._total("chunks")

    @property
    def start(self):
        return min((c.start for c in self.channels), default=None)

    @property
    def end(self):
        return max((c.end for c in self.channels), default=None)

    def kinds(self):
        """Per kind: ``{kind, channels, samples, stored_bytes, chunks}`` in display order."""
        out = {}
        for c in self.channels:
            k = out.setdefault(c.kind, {"kind": c.kind, "channels": 0, "samples": 0, "stored_bytes": 0, "chunks": 0})
            k["channels"] += 1
            k["samples"] += c.samples
            k["stored_bytes"] += c.stored_bytes
            k["chunks"] += c.chunks
        return sorted(out.values(), key=lambda k: KIND_ORDER.get(k["kind"], 9))


def data_summary(identity, labels=None):
    """The ``DataSummary`` of ``identity`` (one grouped query; row channel sets need a second, small one).

    ``labels`` is ``{channel: ChannelLabel}``; by default ``channel_labels(identity)``.
    """
    rows = (
        Chunk.objects.filter(identity=identity)
        .values("kind", "channel")
        .annotate(
            chunks=Count("id"),
            samples=Sum("sample_count"),
            start=Min("start_time"),
            end=Max("end_time"),
            stored=Sum("packed_length"),
            unpacked=Sum("unpacked_length"),
            first=Min("id"),
        )
        .order_by()
    )
    rows = list(rows)
    row_sets = {}
    first_row_ids = [r["first"] for r in rows if r["kind"] == "row"]
    if first_row_ids:
        row_sets = dict(Chunk.objects.filter(id__in=first_row_ids).values_list("channel", "channel_ids"))
    if labels is None:
        labels = channel_labels(identity)
    channels = []
    for r in rows:
        kind, channel = r["kind"], r["channel"]
        ids = row_sets.get(channel, []) if kind == "row" else ([] if kind == "events" else [channel])
        channels.append(
            ChannelSummary(
                kind=kind,
                channel=channel,
                channel_ids=list(ids),
                chunks=r["chunks"],
                samples=r["samples"] or 0,
                start=r["start"],
                end=r["end"],
                stored_bytes=r["stored"] or 0,
                unpacked_bytes=r["unpacked"] or 0,
                label=labels.get(channel) if kind in ("periodic", "timestamped") else None,
            )
        )
    channels.sort(key=lambda c: (KIND_ORDER.get(c.kind, 9), c.channel))
    if not channels and composed.is_composed(identity):  # its data lives elsewhere: channels from its configs
        return DataSummary(identity, composed.summary_channels(identity, labels, ChannelSummary), composed=True)
    return DataSummary(identity, channels)


# --- names from the bound configs -------------------------------------------------------------


def channel_labels(identity):
    """``{session channel id: ChannelLabel}`` from the session's bound JSON configs.

    A config binding's ``channel_offset`` is added to the config's channel ids.
    The first parameter that lists a channel names it (bindings in order, then
    parameters in order); a channel no parameter lists is named by the
    channel's own ``name`` if it has one. Configs that are missing, not JSON,
    larger than ``MAX_CONFIG_BYTES`` or unreadable are skipped: labels are a
    convenience and never stop the page.
    """
    labels = {}
    for identifier, offset in ConfigBinding.objects.filter(session_id=identity).values_list(
        "identifier", "channel_offset"
    ):
        try:
            config = store.find_config(identifier)
            if config is None or config.content_type != JSON_CONTENT_TYPE or config.size > MAX_CONFIG_BYTES:
                continue
            document = store.read_document(config)
        except (ServiceError, OSError):
            continue
        for channel, label in labels_from_document(document, identifier, offset).items():
            labels.setdefault(channel, label)
    return labels


def labels_from_document(document, identifier="", offset=0):
    """``{channel + offset: ChannelLabel}`` for one parsed config document (read leniently, as the config
    admin's outline reads it)."""
    apps = [app for _, app in outline.applications(document)]
    conversions = outline.conversions_by_name(document)
    channels = {}
    for app in apps:
        for channel in outline.items(app, "channels"):
            cid = outline.integer(channel.get("id"))
            if cid is not None:
                channels.setdefault(cid, channel)
    labels = {}
    for app in apps:
        for parameter in outline.items(app, "parameters"):
            conversion = outline.conversion_of(parameter, conversions)
            rational = conversion.get("rational") if isinstance(conversion.get("rational"), dict) else {}
            coeffs = rational.get("coeffs")
            coeffs = (
                tuple(coeffs)
                if isinstance(coeffs, list)
                and len(coeffs) == 6
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coeffs)
                else ()
            )
            if not conversion:
                coeffs = (0, 1, 0, 0, 0, 1)  # no conversion: the schema's default 1:1
            listed = parameter.get("channels") if isinstance(parameter.get("channels"), list) else []
            for cid in listed:
                cid = outline.integer(cid)
                if cid is None or cid + offset in labels:
                    continue
                channel = channels.get(cid, {})
                labels[cid + offset] = ChannelLabel(
                    channel=cid + offset,
                    name=outline.text(parameter.get("name"))
                    or outline.text(parameter.get("id"))
                    or f"channel {cid + offset:x}",
                    description=outline.text(parameter.get("desc")),
                    unit=outline.parameter_unit(parameter, conversion),
                    type=outline.text(channel.get("type")),
                    source=outline.text(channel.get("source")),
                    coeffs=coeffs,
                    config=identifier,
                )
    for cid, channel in channels.items():
        if cid + offset not in labels and outline.text(channel.get("name")):
            labels[cid + offset] = ChannelLabel(
                channel=cid + offset,
                name=channel["name"],
                type=outline.text(channel.get("type")),
                source=outline.text(channel.get("source")),
                config=identifier,
            )
    return labels
