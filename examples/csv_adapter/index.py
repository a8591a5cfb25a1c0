"""Index a folder of CSV files into RTA sessions over gRPC (see README.md).

    python examples/csv_adapter/index.py --root DIR --grpc 127.0.0.1:8082

For every data file under the root (its data identity: the path under the
root), like the toolkit's data-adapter example does for its SQLite files:

1. the schema mapping of (``csv``, identity): kept when one is stored,
   otherwise the column-order default is published (field i -> channel i, f64);
2. a config describing those channels (one parameter per field, periodic at
   the file's interval or timestamped, the mapping's sample types) and the
   events seen, published under an identifier derived from its content;
3. a session, identity a UUID derived from the data identity (indexing again
   updates the same session), with the file's time range, the config bound
   and one data binding ``(csv, identity)`` with no channel bindings: every
   channel passes through 1:1.

The data stays in the files: the server's gateway reads it from the adapter.
"""

import argparse
import hashlib
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import rta_kit  # noqa: E402, F401  (first: puts the generated protobuf modules on the path)

# isort: split
import grpc  # noqa: E402
from csvfiles import SOURCE, Files, data_files, event_id, field_channels  # noqa: E402
from rta.toolkit.api import config_service_pb2 as config_pb  # noqa: E402
from rta.toolkit.api import config_service_pb2_grpc as config_grpc  # noqa: E402
from rta.toolkit.api import schema_mapping_service_pb2 as schema_pb  # noqa: E402
from rta.toolkit.api import session_service_pb2 as session_pb  # noqa: E402
from rta.toolkit.api import session_service_pb2_grpc as session_grpc  # noqa: E402

from rta_kit.schema_client import SchemaMappingClient, field_mapping  # noqa: E402

NAMESPACE = uuid.UUID("5d0c5f0e-8f1a-4f57-9a39-0c6b1f2f3c11")
APP = "csv"
CONFIG_TYPE = "application/vnd.mat.config+json"


def session_identity(identity, source=SOURCE):
    """The session of a data identity: the same one every time the folder is indexed."""
    return str(uuid.uuid5(NAMESPACE, f"{source}\0{identity}"))


def default_mapping(table):
    return schema_pb.SchemaMapping(
        field_mappings=[field_mapping(name, i, "f64", "float") for i, name in enumerate(table.fields)]
    )


def config_document(table, fields, events):
    """The config of one file: a parameter and a channel per field, the events seen."""
    return {
        APP: {
            "desc": "CSV files served by the example data adapter",
            "parameters": [
                {
                    "id": f"{f.field}:{APP}",
                    "name": f.field,
                    "desc": f.field,
                    "conv": "identity",
                    "channels": [f.channel],
                }
                for f in fields
            ],
            "channels": [
                {
                    "id": f.channel,
                    "name": f.field,
                    "type": f.data_type,
                    "source": table.kind,
                    "interval": table.interval or 0,
                }
                for f in fields
            ],
            "conversions": [
                {"name": "identity", "unit": "", "format": "%g", "rational": {"coeffs": [0, 1, 0, 0, 0, 1]}}
            ],
            "events": [{"id": number, "code": str(name), "desc": str(name), "pri": "low"} for name, number in events],
        }
    }


def index_file(files, identity, schemas, sessions, configs, metadata, source=SOURCE):
    table = files.table(identity)
    if not len(table.times):
        return None
    mapping = schemas.get(source, identity)
    if mapping is None:
        mapping = default_mapping(table)
        schemas.put(source, identity, mapping)
    fields = field_channels(table.fields, mapping)
    rows = files.events(identity)
    events = {}
    if rows is not None:
        by_name = {m.source_event: m.target_event_id for m in mapping.event_mappings}
        for name in rows.events:
            number = by_name.get(name) if by_name else event_id(name)
            if number is not None:
                events[name] = number
    document = json.dumps(config_document(table, fields, sorted(events.items())), sort_keys=True).encode()
    config_id = str(uuid.uuid5(NAMESPACE, hashlib.sha256(document).hexdigest())).upper()
    configs.PutConfig(
        config_pb.PutConfigRequest(identifier=config_id, content_type=CONFIG_TYPE, data=document), metadata=metadata
    )
    first, last = int(table.times[0]), int(table.times[-1])
    update = session_pb.SessionUpdate
    request = session_pb.CreateOrUpdateSessionRequest(
        identity=session_identity(identity, source),
        create_if_not_exists=session_pb.CreateOrUpdateSessionRequest.CreateIfNotExists(
            timestamp=datetime.fromtimestamp(first / 1e9, UTC).isoformat(), identifier=Path(identity).stem
        ),
        updates=[
            update(set_time_range=session_pb.TimeRange(start_time=first, end_time=last)),
            update(set_details=update.DetailsMap(details={"Source": source, "File": Path(identity).name})),
            update(
                set_config_bindings=update.ConfigBindingsList(
                    config_bindings=[session_pb.ConfigBinding(identifier=config_id)]
                )
            ),
            update(
                set_data_bindings=update.DataBindingsList(
                    data_bindings=[
                        session_pb.DataBinding(key=session_pb.DataBindingKey(source=source, identity=identity))
                    ]
                )
            ),
        ],
    )
    sessions.CreateOrUpdateSession(request, metadata=metadata)
    return request.identity


def main(argv=None):
    parser = argparse.ArgumentParser(description="Index CSV files into RTA sessions bound to the CSV data adapter.")
    parser.add_argument("--root", required=True, help="the folder the adapter serves")
    parser.add_argument("--grpc", default="127.0.0.1:8082", help="the RTA server's gRPC address")
    parser.add_argument("--token", help="bearer token (a server with auth on)")
    parser.add_argument("--source", default=SOURCE)
    args = parser.parse_args(argv)
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else None
    files = Files(args.root)
    with grpc.insecure_channel(args.grpc) as channel, SchemaMappingClient(args.grpc, token=args.token) as schemas:
        sessions = session_grpc.SessionStoreStub(channel)
        configs = config_grpc.ConfigStoreStub(channel)
        for identity in data_files(args.root):
            session = index_file(files, identity, schemas, sessions, configs, metadata, args.source)
            print(f"{identity}: session {session}" if session else f"{identity}: no rows, skipped")


if __name__ == "__main__":
    main()
