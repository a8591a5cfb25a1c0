"""Channel layout of an Advanced Streams data format.

Every (feed, parameter, aggregate) of a data format gets one channel, numbered
from 0: feeds in name order, parameters in data-format order, aggregates in
the order avg, min, max, first (those the parameter declares). The layout
depends only on the document, so the same format always maps to the same
channels, whichever process or replay computes it.

``tdata`` aggregates go to their own channels; ``tsamples`` (raw samples) go
to the parameter's primary channel: its first declared aggregate in that
order (``avg`` unless it is not declared).
"""

from dataclasses import dataclass, field

from config_app.services.dependencies import parse_aggregates

SECOND = 1_000_000_000


@dataclass
class ParameterLayout:
    identifier: str
    index: int
    aggregates: list
    channels: dict  # aggregate -> channel id (local to the format)

    @property
    def primary_channel(self):
        return self.channels[self.aggregates[0]]


@dataclass
class FeedLayout:
    name: str
    frequency: float | None
    parameters: list = field(default_factory=list)
    by_identifier: dict = field(default_factory=dict)

    @property
    def interval(self):
        """Nominal sample interval (ns) from the feed frequency; 0 when the feed has none."""
        return round(SECOND / self.frequency) if self.frequency else 0


@dataclass
class FormatLayout:
    format_id: str
    feeds: dict
    channel_count: int


def layout(format_id, document):
    """The channel layout of a (validated) data-format document."""
    feeds, channel = {}, 0
    for name in sorted(document["feeds"]):
        spec = document["feeds"][name]
        feed = FeedLayout(name, spec.get("frequency"))
        for index, parameter in enumerate(spec["parameters"]):
            if isinstance(parameter, str):
                identifier, aggregates = parameter, ["avg"]
            else:
                identifier, aggregates = parameter["identifier"], parse_aggregates(parameter.get("aggregates"))
            channels = {}
            for aggregate in aggregates:
                channels[aggregate] = channel
                channel += 1
            entry = ParameterLayout(identifier, index, aggregates, channels)
            feed.parameters.append(entry)
            feed.by_identifier[identifier] = entry
        feeds[name] = feed
    return FormatLayout(format_id, feeds, channel)
