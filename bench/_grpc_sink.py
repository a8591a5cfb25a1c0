"""A gRPC server whose WriteDataStream only counts messages: the ceiling gRPC's Python server sets.

``python -m bench._grpc_sink MAX_MESSAGE_BYTES STREAM_WINDOW_BYTES`` prints
its port and serves until killed. The caller passes the real server's
``RTA_GRPC_MAX_MESSAGE_BYTES`` and ``RTA_GRPC_STREAM_WINDOW_BYTES``; no
interceptors, no parsing: each message is received and dropped, and a
``flush_marker`` (field 2, the only thing the benchmark client sends with that
first byte) is answered at once. ``bench/data.py`` writes 100-sample bursts to
it with the same client as to the real server.
"""

import sys
from concurrent import futures

WRITE_SERVICE = "rta.toolkit.api.chunk_service.DataWriter"


def main(max_message, window):
    import grpc
    from rta.toolkit.api import chunk_service_pb2 as pb

    def write_data_stream(request_iterator, context):
        for raw in request_iterator:
            if raw[:1] == b"\x12":  # WriteDataStreamMessage.flush_marker
                marker = pb.WriteDataStreamMessage.FromString(raw).flush_marker
                yield pb.WriteDataStreamResponseMessage(flush_completed=marker).SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        WRITE_SERVICE,
        {
            "WriteDataStream": grpc.stream_stream_rpc_method_handler(write_data_stream),
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        handlers=[handler],
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            ("grpc.http2.lookahead_bytes", window),
        ],
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    from rta_site import protos

    protos.ensure_importable()
    main(int(sys.argv[1]), int(sys.argv[2]))
