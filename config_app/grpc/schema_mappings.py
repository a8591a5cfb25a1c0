"""SchemaMappingStore servicer: translates protobuf messages to ``config_app.services.schema_mappings`` calls.

Errors of the service layer reach the client through the one gRPC error
interceptor (``rta_site.grpc_errors``).
"""

from google.protobuf import empty_pb2, wrappers_pb2
from rta.toolkit.api import schema_mapping_service_pb2 as pb
from rta.toolkit.api import schema_mapping_service_pb2_grpc as pb_grpc

from config_app.services import schema_mappings

SERVICE = pb.DESCRIPTOR.services_by_name["SchemaMappingStore"]


def mapping_from_message(message):
    """A ``SchemaMapping`` message as the service's plain data (data types as enum numbers)."""
    return {
        "properties": dict(message.properties),
        "field_mappings": [
            {
                "source_field": f.source_field,
                "target_channel": f.target_channel,
                "properties": dict(f.properties),
                "source_field_data_type": f.source_field_data_type,
                "target_channel_data_type": f.target_channel_data_type,
            }
            for f in message.field_mappings
        ],
        "event_mappings": [
            {
                "source_event": e.source_event,
                "target_event_app": e.target_event_app,
                "target_event_id": e.target_event_id,
                "properties": dict(e.properties),
                "source_event_data_fields": list(e.source_event_data_fields),
            }
            for e in message.event_mappings
        ],
    }


def mapping_to_message(mapping):
    """The service's plain data (canonical form) as a ``SchemaMapping`` message."""
    return pb.SchemaMapping(
        properties=mapping["properties"],
        field_mappings=[
            pb.FieldMapping(
                source_field=f["source_field"],
                target_channel=f["target_channel"],
                properties=f["properties"],
                source_field_data_type=f["source_field_data_type"],
                target_channel_data_type=schema_mappings.DATA_TYPES[f["target_channel_data_type"]],
            )
            for f in mapping["field_mappings"]
        ],
        event_mappings=[pb.EventMapping(**e) for e in mapping["event_mappings"]],
    )


class SchemaMappingStoreServicer(pb_grpc.SchemaMappingStoreServicer):
    def HasSchemaMapping(self, request, context):
        return wrappers_pb2.BoolValue(
            value=schema_mappings.has_schema_mapping(request.data_source, request.data_identity)
        )

    def GetSchemaMapping(self, request, context):
        return mapping_to_message(schema_mappings.get_schema_mapping(request.data_source, request.data_identity))

    def QuerySchemaMapping(self, request, context):
        mapping = schema_mappings.query_schema_mapping(
            request.data_source, request.data_identity, request.select_channels, request.select_events
        )
        return mapping_to_message(mapping)

    def PutSchemaMapping(self, request, context):
        schema_mappings.put_schema_mapping(
            request.data_source, request.data_identity, mapping_from_message(request.schema_mapping)
        )
        return empty_pb2.Empty()

    def DeleteSchemaMapping(self, request, context):
        schema_mappings.delete_schema_mapping(request.data_source, request.data_identity)
        return empty_pb2.Empty()


def register(server):
    pb_grpc.add_SchemaMappingStoreServicer_to_server(SchemaMappingStoreServicer(), server)
    return [SERVICE.full_name]
