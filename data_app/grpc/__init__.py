"""gRPC registration for the Data Service: add ``"data_app.grpc.register"`` to RTA_GRPC_SERVICES."""


def register(server):
    import grpc
    from rta.toolkit.api import chunk_service_pb2 as pb
    from rta.toolkit.api import chunk_service_pb2_grpc as pb_grpc

    from data_app.grpc.servicer import READER_NAME, WRITER_NAME, DataReaderServicer, write_data_stream

    pb_grpc.add_DataReaderServicer_to_server(DataReaderServicer(), server)
    writer = grpc.stream_stream_rpc_method_handler(
        write_data_stream,
        request_deserializer=None,  # raw bytes: malformed messages become INVALID_ARGUMENT
        response_serializer=pb.WriteDataStreamResponseMessage.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(WRITER_NAME, {"WriteDataStream": writer}),))
    return [WRITER_NAME, READER_NAME]
