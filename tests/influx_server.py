"""A real InfluxDB 1.x server for tests: ``influxd`` on a free loopback port with its own data folder.

The Debian ``influxdb`` package's service is not used: each ``InfluxServer``
runs ``influxd`` with a generated config (HTTP and RPC on free ports, meta,
data and WAL under a temporary folder, reporting and self-monitoring off),
so tests never share or touch a system database. A missing ``influxd`` skips
the test, and fails it under ``CI=true`` (``.ci/run`` installs the package).
"""

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, free_port

START_SECONDS = 60  # influxd opens its stores before it answers /ping

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
{data_settings}
[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  max-row-limit = 0
  max-body-size = 0
"""


def influxd_binary():
    """The ``influxd`` path; skips the test without one (fails under CI=true)."""
    binary = shutil.which("influxd") or next((p for p in ("/usr/bin/influxd",) if Path(p).exists()), None)
    if binary is None:
        message = "this test needs InfluxDB 1.x (influxd; Debian package influxdb)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


class InfluxServer:
    """``influxd`` serving HTTP at ``url`` from ``root``; ``stop()`` ends it, ``start()`` runs it again.

    ``data_settings``: more ``[data]`` settings (``{name: TOML value}``), e.g. compaction timings.
    """

    def __init__(self, root, data_settings=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.binary = influxd_binary()
        self.http_port, self.rpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = self.root / "influxdb.conf"
        extra = "".join(f"  {name} = {value}\n" for name, value in (data_settings or {}).items())
        self.config.write_text(
            CONFIG.format(root=self.root, http_port=self.http_port, rpc_port=self.rpc_port, data_settings=extra)
        )
        self.log = self.root / "influxd.log"
        self.process = None
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.start()

    def start(self):
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "run", "-config", str(self.config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert self.process.poll() is None, f"influxd exited: {self.log.read_text(errors='replace')[-4000:]}"
            try:
                if self.client.get("/ping").status_code == 204:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"influxd did not start: {self.log.read_text(errors='replace')}"
            time.sleep(0.1)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self):
        self.stop()
        self.client.close()

    def query(self, statement, database=None):
        """Run an InfluxQL statement (POST /query); the JSON answer, failing on an error."""
        params = {"q": statement, **({"db": database} if database else {})}
        response = self.client.post("/query", params=params)
        response.raise_for_status()
        answer = response.json()
        for result in answer.get("results", []):
            assert "error" not in result, result["error"]
        return answer

    def write(self, database, lines, precision="n"):
        """Write line protocol (an iterable of lines) to ``database``, in batches."""
        batch = []
        for line in lines:
            batch.append(line)
            if len(batch) >= 50_000:
                self._write(database, batch, precision)
                batch = []
        if batch:
            self._write(database, batch, precision)

    def _write(self, database, batch, precision):
        response = self.client.post(
            "/write", params={"db": database, "precision": precision}, content="\n".join(batch).encode()
        )
        assert response.status_code == 204, response.text
