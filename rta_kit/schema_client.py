"""A client of the Schema Mapping Service (``SchemaMappingStore``, spec §14) for data adapters.

::

    with SchemaMappingClient("127.0.0.1:8082") as schemas:
        mapping = schemas.query("csv", identity, channels)        # None when there is none
        if mapping is not None:
            for field in mapping.field_mappings:
                field.source_field, field.target_channel, type_name(field.target_channel_data_type)

Mappings are the protobuf messages (``schema_mapping_service_pb2.SchemaMapping``);
``fields(mapping)`` lists their field mappings as ``Field`` tuples. ``token``
sends ``Authorization: Bearer <token>`` with every call (a server with OAuth
on); ``credentials`` (``grpc.ssl_channel_credentials()``) makes a TLS channel.
Errors other than NOT_FOUND are raised as ``grpc.RpcError``.
"""

from typing import NamedTuple

import grpc
from rta.toolkit.api import schema_mapping_service_pb2 as pb
from rta.toolkit.api import schema_mapping_service_pb2_grpc as pb_grpc

from rta_kit.datatypes import TARGET_CHANNEL_DATA_TYPES, type_name

DEFAULT_TIMEOUT = 10.0


class Field(NamedTuple):
    source_field: str
    channel: int
    data_type: str  # "f64" ... (UNSPECIFIED: "f64")
    properties: dict


def fields(mapping):
    """The field mappings of ``mapping`` as ``Field``s, in their stored order."""
    return [
        Field(f.source_field, f.target_channel, type_name(f.target_channel_data_type), dict(f.properties))
        for f in mapping.field_mappings
    ]


def channel_expression(channels):
    """A channel expression (hexadecimal) for ``channels``: a string as is, ints, or a ``ChannelSet``."""
    if isinstance(channels, str):
        return channels
    ranges = getattr(channels, "ranges", None)
    if ranges is not None:
        return ",".join(f"{lo:X}" if lo == hi else f"{lo:X}-{hi:X}" for lo, hi in ranges)
    return ",".join(f"{int(c):X}" for c in channels)


class SchemaMappingClient:
    """``target`` is ``host:port`` of the server's gRPC port."""

    def __init__(self, target, token=None, credentials=None, timeout=DEFAULT_TIMEOUT):
        self.channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        self.stub = pb_grpc.SchemaMappingStoreStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.timeout = timeout

    def query(self, source, identity, channels="0-", events=False):
        """The mapping with only the field mappings of ``channels`` (and the event mappings if ``events``).

        ``channels``: a channel expression, ints or a ``ChannelSet``; "" selects
        no field. None when no mapping is stored for ``(source, identity)``.
        """
        request = pb.QuerySchemaMappingRequest(
            data_source=source,
            data_identity=identity,
            select_channels=channel_expression(channels),
            select_events=events,
        )
        return self._or_none(self.stub.QuerySchemaMapping, request)

    def get(self, source, identity):
        """The whole mapping, or None."""
        return self._or_none(
            self.stub.GetSchemaMapping, pb.GetSchemaMappingRequest(data_source=source, data_identity=identity)
        )

    def has(self, source, identity):
        request = pb.HasSchemaMappingRequest(data_source=source, data_identity=identity)
        return self.stub.HasSchemaMapping(request, timeout=self.timeout, metadata=self.metadata).value

    def put(self, source, identity, mapping):
        """Create or replace the mapping (a ``SchemaMapping`` message)."""
        request = pb.PutSchemaMappingRequest(data_source=source, data_identity=identity, schema_mapping=mapping)
        self.stub.PutSchemaMapping(request, timeout=self.timeout, metadata=self.metadata)

    def delete(self, source, identity):
        request = pb.DeleteSchemaMappingRequest(data_source=source, data_identity=identity)
        self.stub.DeleteSchemaMapping(request, timeout=self.timeout, metadata=self.metadata)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _or_none(self, call, request):
        try:
            return call(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


def field_mapping(source_field, channel, data_type="f64", source_type="", **properties):
    """A ``FieldMapping`` message (``data_type``: "f64", "s16" ... or a TargetChannelDataType)."""
    return pb.FieldMapping(
        source_field=source_field,
        target_channel=channel,
        source_field_data_type=source_type,
        target_channel_data_type=_enum(data_type),
        properties=properties,
    )


def _enum(data_type):
    """The TargetChannelDataType number of a sample type (never UNSPECIFIED)."""
    name = type_name(data_type)
    return next(number for number, n in TARGET_CHANNEL_DATA_TYPES.items() if number and n == name)
