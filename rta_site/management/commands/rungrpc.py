"""Serve only the gRPC services."""
import signal
import threading

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the gRPC services (with health and reflection) on RTA_GRPC_PORT until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=None)
        parser.add_argument("--port", type=int, default=None)

    def handle(self, *args, **options):
        from rta_site.grpc_server import build_server

        server, port = build_server(options["port"], options["bind"])
        server.start()
        self.stdout.write(f"gRPC listening on port {port} ({', '.join(server.service_names)})")
        self.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.stop(grace=2).wait()
        self.stdout.write("stopped")
