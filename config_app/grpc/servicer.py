"""ConfigStore servicer: translates protobuf messages to ``config_app.services.store`` calls.

Errors of the service layer reach the client through the one gRPC error
interceptor (``rta_site.grpc_errors``).
"""

from django.conf import settings
from google.protobuf import empty_pb2, wrappers_pb2
from rta.toolkit.api import config_service_pb2 as pb
from rta.toolkit.api import config_service_pb2_grpc as pb_grpc

from config_app.services import store
from rta_core.errors import InvalidArgument

# Room for the rest of a GetConfigResponse / ConfigStreamMessage around the bytes
# (field tags, lengths and a content type of at most 64 characters).
ENVELOPE_BYTES = 128


def _message_limit():
    return settings.RTA_GRPC_MAX_MESSAGE_BYTES - ENVELOPE_BYTES


def _pieces(messages):
    """The ``piece`` bytes of the messages after the first; an ``info`` among them is an error."""
    for index, message in enumerate(messages, start=1):
        kind = message.WhichOneof("type")
        if kind == "piece":
            yield message.piece
        elif kind == "info":
            raise InvalidArgument(f"message {index}: info may only be sent first, then pieces")


class ConfigStoreServicer(pb_grpc.ConfigStoreServicer):
    def PutConfig(self, request, context):
        store.put_config(request.identifier, request.content_type, request.data)
        return empty_pb2.Empty()

    def PutConfigStream(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None:
            raise InvalidArgument("PutConfigStream got no messages: send info (identifier, content type) then pieces")
        if first.WhichOneof("type") != "info":
            raise InvalidArgument("the first message of PutConfigStream must be info (identifier, content type)")
        store.put_config_stream(first.info.identifier, first.info.content_type, _pieces(request_iterator))
        return empty_pb2.Empty()

    def HasConfig(self, request, context):
        return wrappers_pb2.BoolValue(value=store.has_config(request.identifier))

    def GetConfig(self, request, context):
        config, data = store.read_config(request.identifier, max_size=_message_limit())
        return pb.GetConfigResponse(content_type=config.content_type, data=data)

    def GetConfigStream(self, request, context):
        config = store.get_config(request.identifier)
        handle = store.open_config(config)
        try:
            yield pb.ConfigStreamMessage(
                info=pb.ConfigStreamMessage.ConfigInfo(identifier=config.identifier, content_type=config.content_type)
            )
            piece_size = max(1, min(store.PIECE_SIZE, _message_limit()))
            for piece in store.iter_pieces(handle, piece_size):
                yield pb.ConfigStreamMessage(piece=piece)
        finally:
            handle.close()

    def DeleteConfig(self, request, context):
        store.delete_config(request.identifier)
        return empty_pb2.Empty()


def register(server):
    pb_grpc.add_ConfigStoreServicer_to_server(ConfigStoreServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["ConfigStore"].full_name]
