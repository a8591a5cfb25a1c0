"""A data adapter serving a folder of CSV files to an RTA gateway (see README.md).

    python examples/csv_adapter/adapter.py --root DIR --port 8090 --schema-mappings 127.0.0.1:8082

The files, their fields and the mapping of fields to channels are described
in ``csvfiles.py``. The adapter itself is the class below: each method gets a
data identity (the file's path under the root), the requested channels and
data-time bounds, and returns chunks made with the adapter kit (``rta_kit``).
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # this folder, and the project root for rta_kit / rta_core

from csvfiles import SOURCE, Files, event_id, field_channels  # noqa: E402

from rta_kit.chunking import event, event_chunks, periodic_chunks, series_chunks  # noqa: E402
from rta_kit.datatypes import sample_dtype  # noqa: E402
from rta_kit.grid import ChunkGrid  # noqa: E402


class CsvAdapter:
    def __init__(self, root, schema_mappings=None, source=SOURCE):
        self.files = Files(root)
        self.schemas = schema_mappings  # a rta_kit.schema_client.SchemaMappingClient, or None
        self.source = source

    def periodic_chunks(self, identity, channels, start, end):
        table = self.files.table(identity)
        if table.kind != "periodic":
            return
        first = int(table.times[0])
        for f in self._fields(identity, table, channels):
            grid = ChunkGrid.for_interval(table.interval, sample_dtype(f.data_type).itemsize)
            values = table.values[f.field]
            yield from periodic_chunks(f.channel, first, table.interval, values, f.data_type, grid, start, end)

    def timestamped_chunks(self, identity, channels, start, end):
        table = self.files.table(identity)
        if table.kind != "timestamped":
            return
        grid = ChunkGrid.for_times(table.times)  # from the whole file: the same for every request
        for f in self._fields(identity, table, channels):
            present = table.present[f.field]
            times, values = table.times[present], table.values[f.field][present]
            yield from series_chunks(f.channel, times, values, "timestamped", None, f.data_type, grid, start, end)

    def events(self, identity, start, end):
        rows = self.files.events(identity)
        if rows is None:
            return []
        mapping = self.schemas.query(self.source, identity, "", events=True) if self.schemas else None
        mapped_events = mapping.event_mappings if mapping is not None else ()
        by_name = {m.source_event: m for m in mapped_events} if mapped_events else None
        events = []
        for i, (t, name, status) in enumerate(zip(rows.times.tolist(), rows.events, rows.statuses)):
            if by_name is not None:
                mapped = by_name.get(name)
                if mapped is None:
                    continue
                app, number = mapped.target_event_app, mapped.target_event_id
                columns = list(mapped.source_event_data_fields) or rows.columns
            else:
                app, number, columns = SOURCE, event_id(name), rows.columns
                if number is None:
                    continue
            values = [rows.values[c][i] for c in columns if c in rows.values]
            events.append(event(t, number, app, status, values))
        return event_chunks(events, start=start, end=end)

    def _fields(self, identity, table, channels):
        """The requested fields: from the schema mapping when there is one, else columns in order."""
        mapping = self.schemas.query(self.source, identity, channels) if self.schemas else None
        return [f for f in field_channels(table.fields, mapping) if f.channel in channels]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve a folder of CSV files as an RTA data service.")
    parser.add_argument("--root", required=True, help="folder of CSV files (nothing outside it is read)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--schema-mappings", metavar="HOST:PORT", help="the RTA server's gRPC port (schema mappings)")
    parser.add_argument("--schema-token", help="bearer token for the Schema Mapping Service (a server with auth on)")
    parser.add_argument("--source", default=SOURCE, help="the data source name bindings use (default csv)")
    args = parser.parse_args(argv)
    if not Path(args.root).is_dir():
        parser.error(f"--root {args.root} is not a folder")
    schemas = None
    if args.schema_mappings:
        from rta_kit.schema_client import SchemaMappingClient

        schemas = SchemaMappingClient(args.schema_mappings, token=args.schema_token)
    from rta_kit.serve import serve

    serve(CsvAdapter(args.root, schemas, args.source), args.host, args.port)


if __name__ == "__main__":
    main()
