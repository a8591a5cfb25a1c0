"""Schemathesis against the server's own OpenAPI document (issue 16 #11): no 5xx, no schema violation.

A real ``manage.py serve`` on the embedded defaults with one demo session
answers requests schemathesis generates from ``/rta/v2/schema`` (path values
drawn half of the time from what exists: the demo session, its config, its
folder and channel ranges). Bounded by FUZZ_SECONDS (default 25); ``make fuzz``
runs it alone, ``FUZZ_SECONDS=600 make fuzz`` longer. FUZZ_SEED picks the seed.
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.test_http_hardening import Server
from tests.test_serve import ROOT

pytestmark = pytest.mark.fuzz

CHECKS = "not_a_server_error,response_schema_conformance"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    env["RTA_DATABASE_URL"] = f"sqlite:///{tmp / 'rta.sqlite3'}"
    env["RTA_DATA_PATH"] = str(tmp / "data")
    env["RTA_ACCESS_LOG"] = "false"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [sys.executable, "manage.py", "load_demo", "--sessions", "1", "--minutes", "1", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    server = Server(env, tmp / "server.log")
    yield server, tmp
    server.stop()


def config_file(server, tmp):
    """Schemathesis configuration: existing path values, offered half of the time."""
    with urllib.request.urlopen(server.url("/rta/v2/sessions"), timeout=30) as response:
        (session,) = json.loads(response.read())["sessions"]
    dictionaries = {
        "identity": [session["identity"]],
        "channels": ["0-", "1", "0-3f", "2,4-7"],
        "identifier": [binding["identifier"] for binding in session["configBindings"]],
        "parent": ["demo"],
    }
    lines = []
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in dictionaries]
    path = Path(tmp) / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_schema_holds_and_nothing_answers_5xx(demo_server):
    server, tmp = demo_server
    seconds = os.environ.get("FUZZ_SECONDS", "25")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config_file(server, tmp)),
        "--no-color",
        "run",
        server.url("/rta/v2/schema"),
        "--url",
        server.url(""),
        "--checks",
        CHECKS,
        "--max-time",
        seconds,
        "--seed",
        os.environ.get("FUZZ_SEED", "16"),
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=float(seconds) + 120)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Exception inside application" not in server.output(), server.output()[-3000:]
