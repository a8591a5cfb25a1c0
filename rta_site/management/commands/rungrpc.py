"""Serve only the gRPC services."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the gRPC services (with health and reflection) on RTA_GRPC_PORT until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=None)
        parser.add_argument("--port", type=int, default=None)
        parser.add_argument(
            "--processes", type=int, default=None, help="processes sharing the port (RTA_GRPC_PROCESSES, default 1)"
        )
        parser.add_argument(
            "--reuse-port",
            action="store_true",
            help="share the port with other processes (set for the extra processes)",
        )

    def handle(self, *args, **options):
        from rta_site.grpc_server import build_server
        from rta_site.grpc_workers import GrpcWorkers

        processes = options["processes"] or settings.RTA_GRPC_PROCESSES
        bind = options["bind"] or settings.RTA_BIND_ADDRESS
        server, port = build_server(options["port"], bind, reuse_port=options["reuse_port"] or processes > 1)
        server.start()
        workers = GrpcWorkers(processes - 1, port, bind).start() if processes > 1 else None
        self.stdout.write(
            f"gRPC listening on port {port} ({', '.join(server.service_names)})"
            + (f" in {processes} processes" if processes > 1 else "")
        )
        self.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        if workers is not None:
            workers.stop()
        server.stop(grace=2).wait()
        self.stdout.write("stopped")
