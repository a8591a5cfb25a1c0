"""What an indexer finds at one data identity: fields, time range, metadata (``services.publish`` publishes it).

Here, beside the sources, because a source's own indexing code (reading a
store's metadata) describes what it found in these terms without reaching up
into the services that publish it.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IndexedField:
    """A field found in the store: its name, sample type (``f64`` ...), interval (ns, None: irregular)."""

    name: str
    data_type: str = "f64"
    interval: int | None = None
    properties: dict = field(default_factory=dict)  # the field mapping's (``table`` ...)
    source_type: str = ""  # the store's own type name


@dataclass
class IndexedData:
    """What an indexer found for one identity."""

    fields: list  # IndexedField
    start: int  # first sample, ns
    end: int  # last sample, ns
    identifier: str = ""  # the session's name; default: the identity's last part
    timestamp: int | None = None  # ns; default: start
    details: dict = field(default_factory=dict)  # shown with the session (metadata the data has)
    properties: dict = field(default_factory=dict)  # the mapping's (``table``, ``time_column`` ...)
    events: list = field(default_factory=list)  # (event id, name) pairs seen
