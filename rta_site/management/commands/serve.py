"""Serve everything in one process: HTTP + WebSocket (daphne) and gRPC."""

import logging

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger("rta_site.serve")


class Command(BaseCommand):
    help = "Serve REST and WebSocket on RTA_HTTP_PORT and gRPC on RTA_GRPC_PORT until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=None, help="address to listen on (RTA_BIND_ADDRESS)")
        parser.add_argument("--http-port", type=int, default=None, help="HTTP/WebSocket port (RTA_HTTP_PORT)")
        parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port (RTA_GRPC_PORT)")
        parser.add_argument("--https-port", type=int, default=None, help="HTTPS/WSS port with TLS (RTA_HTTPS_PORT)")
        parser.add_argument("--no-grpc", action="store_true", help="do not start the gRPC server")
        parser.add_argument(
            "--grpc-processes",
            type=int,
            default=None,
            help="processes sharing the gRPC port (RTA_GRPC_PROCESSES, default 1)",
        )

    def handle(self, *args, **options):
        from daphne.endpoints import build_endpoint_description_strings

        from data_app.live.trimmer import TrimmerThread
        from rta_site.asgi import application
        from rta_site.auth import tls
        from rta_site.grpc_server import build_server
        from rta_site.grpc_workers import GrpcWorkers
        from rta_site.http_server import FlowControlledServer

        bind = options["bind"] or settings.RTA_BIND_ADDRESS
        http_port = options["http_port"] if options["http_port"] is not None else settings.RTA_HTTP_PORT
        grpc_server = grpc_workers = None
        if settings.RTA_ENABLE_GRPC and not options["no_grpc"]:
            processes = options["grpc_processes"] or settings.RTA_GRPC_PROCESSES
            grpc_server, grpc_port = build_server(options["grpc_port"], bind, reuse_port=processes > 1)
            grpc_server.start()
            if processes > 1:
                grpc_workers = GrpcWorkers(processes - 1, grpc_port, bind).start()
            self.stdout.write(
                f"gRPC listening on {bind}:{grpc_port} ({', '.join(grpc_server.service_names)})"
                + (f" in {processes} processes" if processes > 1 else "")
            )
        self.stdout.write(f"HTTP and WebSocket listening on {bind}:{http_port}")
        endpoints = build_endpoint_description_strings(host=bind, port=http_port)
        https_port = options["https_port"] if options["https_port"] is not None else settings.RTA_HTTPS_PORT
        https = tls.https_endpoint(bind, https_port)  # with RTA_TLS_CERT_FILE + RTA_TLS_KEY_FILE
        if https is not None:
            endpoints.append(https)
            self.stdout.write(f"HTTPS and WSS listening on {bind}:{https_port}")
        self.stdout.flush()
        # The live buffer's trimmer (spec §9); `manage.py trim_streams` runs it on its own instead.
        trimmer = TrimmerThread() if settings.RTA_STREAM_TRIMMER else None
        if trimmer is not None:
            trimmer.start()
        try:
            FlowControlledServer(
                application=application,
                endpoints=endpoints,
                signal_handlers=True,
                action_logger=None,
                websocket_timeout=settings.RTA_WEBSOCKET_MAX_SECONDS,
            ).run()
        finally:
            if grpc_workers is not None:
                grpc_workers.stop()
            if grpc_server is not None:
                grpc_server.stop(grace=2).wait()
            self.stdout.write("stopped")
