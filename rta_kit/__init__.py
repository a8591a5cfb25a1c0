"""The RTA data adapter kit: everything a data service needs to speak the chunked wire format.

Framework-free (no Django): the server's chunk store and gateway use it, and
so can a standalone data adapter. A data adapter serving a store of its own in
a few tens of lines (docs/adapter-kit.md; a complete one: examples/csv_adapter)::

    from rta_kit import ChunkGrid, event_chunks, series_chunks
    from rta_kit.serve import serve

    class MyAdapter:
        def periodic_chunks(self, identity, channels, start, end):
            for channel in my_channels(identity):
                if channel in channels:
                    grid = ChunkGrid.for_interval(my_interval(channel))
                    low, high = grid.snap(start, end)             # read whole chunks
                    times, values = my_read(identity, channel, low, high)
                    yield from series_chunks(channel, times, values, grid=grid, start=start, end=end)

        def events(self, identity, start, end):
            return event_chunks(my_events(identity, start, end))  # (time, id, app, status, values)

    serve(MyAdapter(), port=8090)  # or: python -m rta_kit.serve mymodule:MyAdapter --port 8090

Public API (``rta_kit.<name>`` or from its module):

- ``grid``: ``ChunkGrid(span)``, ``ChunkGrid.for_interval(interval)`` -- the
  stable chunk grid (``snap`` request bounds outwards, ``window``, ``windows``).
- ``chunking``: ``periodic_chunks``, ``series_chunks``, ``event_chunks``,
  ``row_chunks``, ``ChunkingBuffer``, ``Chunk``, ``event``, ``detect_interval``
  -- samples and events to chunks, encoded as the server's store encodes them
  (``windows``: many whole windows at once).
- ``datatypes``: ``sample_dtype``, ``type_name``, ``as_samples`` -- u8 s8 u16
  s16 u32 s32 f32 f64 and the Schema Mapping ``TargetChannelDataType``.
- ``service``: ``DataServiceApp`` / ``create_app`` -- the ASGI application of
  the data-service interface (spec §13); ``serve.serve``: run it (uvicorn;
  ``python -m rta_kit.serve module:name``).
- ``schema_client``: ``SchemaMappingClient``, ``fields``, ``field_mapping``.
- ``rta_core.channels.parse_channels`` -- channel expressions (``ChannelSet``).
- Lower level: ``wire`` (the chunked wire format, spec §8: ``ChunkStreamWriter``,
  ``read_chunks``), ``items``/``timestamped``/``samples``/``varints`` (item
  encoding), ``transforms`` (a data binding's offset, clipping and re-mapping
  of one chunk).

The protobuf modules (``rta.model``, ``rta.toolkit``) are generated into the
project's ``protos/`` (``make protos``); importing the kit puts that folder on
``sys.path`` when they are not importable otherwise.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

_PROTOS = Path(__file__).resolve().parent.parent / "protos"
if importlib.util.find_spec("rta") is None and _PROTOS.is_dir() and str(_PROTOS) not in sys.path:
    sys.path.insert(0, str(_PROTOS))

_EXPORTS = {
    "ChunkGrid": "grid",
    "Chunk": "chunking",
    "ChunkingBuffer": "chunking",
    "periodic_chunks": "chunking",
    "series_chunks": "chunking",
    "event_chunks": "chunking",
    "row_chunks": "chunking",
    "event": "chunking",
    "detect_interval": "chunking",
    "sample_dtype": "datatypes",
    "type_name": "datatypes",
    "as_samples": "datatypes",
    "DataServiceApp": "service",
    "RequestContext": "service",
    "create_app": "service",
    "SchemaMappingClient": "schema_client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    # Loaded on first use: the server imports rta_kit.wire without the service or gRPC client.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rta_kit' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rta_kit.{module}"), name)
