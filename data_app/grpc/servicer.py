"""DataWriter and DataReader gRPC services (spec §7), over ``data_app.store``."""

import logging

import grpc
from django.db import connection
from google.protobuf.message import DecodeError
from rta.toolkit.api import chunk_service_pb2 as pb
from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

from data_app.channels import parse_channels
from data_app.sink import DataSink
from data_app.store import reader
from rta_site.errors import NotFound, ServiceError

log = logging.getLogger(__name__)

WRITER_NAME = pb.DESCRIPTOR.services_by_name["DataWriter"].full_name
READER_NAME = pb.DESCRIPTOR.services_by_name["DataReader"].full_name
_KINDS = {"timestamped_data": "timestamped", "periodic_data": "periodic", "row_data": "row", "event": "events"}


def _abort(context, exc):
    if isinstance(exc, NotFound):
        context.abort(grpc.StatusCode.NOT_FOUND, exc.message)
    if isinstance(exc, ServiceError):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
    log.exception("data service call failed", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, "internal server error")


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
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"message {index} is not a valid WriteDataStreamMessage"
                )
            which = message.WhichOneof("type")
            if writer is None:
                if which != "data_identity" or not message.data_identity:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must name the data_identity")
                writer = DataSink(message.data_identity)
                continue
            if which == "flush_marker":
                writer.flush()
                yield pb.WriteDataStreamResponseMessage(flush_completed=message.flush_marker)
            elif which in _KINDS:
                try:
                    writer.add(_KINDS[which], getattr(message, which))
                except ServiceError as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"message {index}: {exc.message}")
            elif which == "data_identity":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "data_identity may only be sent once, first")
            else:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"message {index} is empty")
        if writer is not None:
            writer.flush()
    except Exception as exc:
        if writer is not None:
            writer.discard()
        if context.code() is not None or isinstance(exc, grpc.RpcError):
            raise
        _abort(context, exc)
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
            if not request.data_identity:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "data_identity is required")
            channels = parse_channels(request.channels) if with_channels else None
            stream = reader.open_identity(request.data_identity, kind, channels, *_bounds(request))
        except reader.StoreBusy as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, exc.message)
        except ServiceError as exc:
            _abort(context, exc)
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
