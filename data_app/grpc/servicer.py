"""DataWriter and DataReader gRPC services (spec §7), over ``data_app.store``.

Errors reach the client through the one gRPC error interceptor (``rta_site.grpc_errors``).
A folder-restricted caller (``current_access()``) reads and writes only data identities a
session in its folders has or binds (``sessions_app.services.scope``).
"""

import logging

from django.db import connection
from google.protobuf.message import DecodeError
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.services.channels import parse_channels
from data_app.services.sink import DataSink
from data_app.store import reader, roles
from rta_core.access import current_access
from rta_core.errors import InvalidArgument, ServiceError
from rta_core.identities import validate_identity
from sessions_app.services import scope

log = logging.getLogger(__name__)

WRITER_NAME = pb.DESCRIPTOR.services_by_name["DataWriter"].full_name
READER_NAME = pb.DESCRIPTOR.services_by_name["DataReader"].full_name
_KINDS = {"timestamped_data": "timestamped", "periodic_data": "periodic", "row_data": "row", "event": "events"}


def write_data_stream(request_iterator, context):
    """Bidirectional WriteDataStream over raw request bytes.

    Requests are parsed here (not by gRPC) so a truncated or corrupt message is
    an INVALID_ARGUMENT. On any error the items buffered since the last flush
    are dropped; everything acknowledged by ``flush_completed`` stays stored.
    """
    writer = None
    try:
        for index, raw in enumerate(request_iterator):
            message = pb.WriteDataStreamMessage()
            try:
                message.ParseFromString(raw)
            except DecodeError:
                raise InvalidArgument(f"message {index} is not a valid WriteDataStreamMessage") from None
            which = message.WhichOneof("type")
            if writer is None:
                roles.check_writer()  # a reader-only instance refuses before anything is acknowledged
                if which != "data_identity" or not message.data_identity:
                    raise InvalidArgument("the first message must name the data_identity")
                scope.check_data_write(current_access(), message.data_identity)
                writer = DataSink(message.data_identity)
                continue
            if which == "flush_marker":
                writer.flush()
                yield pb.WriteDataStreamResponseMessage(flush_completed=message.flush_marker)
            elif which in _KINDS:
                try:
                    writer.add(_KINDS[which], getattr(message, which))
                except ServiceError as exc:
                    raise type(exc)(f"message {index}: {exc.message}", field=exc.field) from None
            elif which == "data_identity":
                raise InvalidArgument("data_identity may only be sent once, first")
            else:
                raise InvalidArgument(f"message {index} is empty")
        if writer is not None:
            writer.flush()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        connection.close()


def _bounds(request):
    start = request.start_time.value if request.HasField("start_time") else None
    end = request.end_time.value if request.HasField("end_time") else None
    return start, end


def _read(kind, with_channels):
    # DataReader reads a data identity as stored (spec §7): data bindings are a
    # session's, resolved by the REST data endpoints only.
    def method(self, request, context):
        try:
            validate_identity(request.data_identity, "data_identity")
            scope.check_data_read(current_access(), request.data_identity)
            channels = parse_channels(request.channels) if with_channels else None
            stream = reader.open_identity(request.data_identity, kind, channels, *_bounds(request))
        finally:
            connection.close()
        yield from stream.lists()  # closes the stream's files when done or cancelled

    method.__name__ = f"read_{kind}"
    return method


class DataReaderServicer(pb_grpc.DataReaderServicer):
    ReadTimestampedDataStream = _read("timestamped", True)
    ReadPeriodicDataStream = _read("periodic", True)
    ReadRowDataStream = _read("row", True)
    ReadEventsStream = _read("events", False)
