"""Extra gRPC server processes sharing one port through SO_REUSEPORT.

One Python process runs gRPC calls one bytecode at a time (the GIL), so
SessionStore throughput stops at one core. ``RTA_GRPC_PROCESSES`` > 1 starts
that many ``manage.py rungrpc --reuse-port`` processes in all (the parent
counts as one): the kernel spreads client connections over them, and all of
them share the database, as any scale-out of this server does. Workers die
with their parent (PR_SET_PDEATHSIG), so a killed server leaves no orphans.
"""

import ctypes
import logging
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: workers are still stopped by ``stop()``
        pass


class GrpcWorkers:
    """``count`` extra ``rungrpc`` processes on ``bind:port`` (already bound by the parent)."""

    def __init__(self, count, port, bind):
        self.count, self.port, self.bind = count, port, bind
        self.processes = []

    def start(self):
        for _ in range(self.count):
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(MANAGE_PY),
                        "rungrpc",
                        "--bind",
                        self.bind,
                        "--port",
                        str(self.port),
                        "--reuse-port",
                        "--processes",
                        "1",
                    ],
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
            )
        log.info("started %d extra gRPC processes on port %d", self.count, self.port)
        return self

    def stop(self, timeout=10):
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes = []
