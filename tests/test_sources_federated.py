"""A built-in source served across servers: one server reads SQLite files in place and exposes them, another
composes sessions from it over HTTP (real processes, real sockets).

The origin indexes its files (``manage.py index_sqlite``) and serves its
sessions in-process; with ``RTA_EXPOSE_DATA_SERVICE`` it is also a data
service at ``/rta/v2/sources/sqlite``. The edge lists that URL in its
``RTA_DATA_SERVICES``: its sessions bound to (``sqlite``, identity) must
serve what the origin's own sessions serve, byte for byte when untransformed,
offset when bound with an offset; its ``/health`` follows the origin's.
"""

import os
import subprocess
import sys
from urllib.parse import quote

import pytest

from data_app.services.publish import session_identity
from tests.test_data_bindings import S, served
from tests.test_gateway import WAIT, Server, get, read
from tests.test_serve import ROOT
from tests.test_source_sqlite import make_file

IDENTITY = "laps/run 1.sqlite"  # a folder and a space: percent-encoded on the way


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sources-federated")
    root = tmp / "files"
    (root / "laps").mkdir(parents=True)
    make_file(root / IDENTITY, seconds=60)
    started = []
    try:
        origin = Server(tmp, "origin", RTA_SQLITE_ROOT=str(root), RTA_EXPOSE_DATA_SERVICE="true")
        started.append(origin)
        subprocess.run(
            [sys.executable, "manage.py", "index_sqlite"], cwd=ROOT, env=origin.env, check=True, capture_output=True
        )
        base = f"http://127.0.0.1:{origin.port}/rta/v2/sources/sqlite"
        edge = Server(tmp, "edge", RTA_DATA_SERVICES=f"sqlite={base}", RTA_DATA_SERVICE_HEALTH_TIMEOUT="5")
        started.append(edge)
        binding = {"source": "sqlite", "identity": IDENTITY, "channel_bindings": []}
        edge.sessions({"edge-plain": [binding], "edge-offset": [{**binding, "session_time_offset": 7 * S}]})
        yield origin, edge
    finally:
        for server in started:
            server.stop()


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_the_edge_serves_what_the_origin_serves(servers, kind):
    origin, edge = servers
    here = read(origin, session_identity("sqlite", IDENTITY), kind, "0-")
    there = read(edge, "edge-plain", kind, "0-")
    assert here, "the origin serves the file"
    assert [(c.start, c.end, c.channel_ids, c.payload) for c in there] == [
        (c.start, c.end, c.channel_ids, c.payload) for c in here
    ], "untransformed: the same chunks, payloads byte for byte"


def test_an_offset_binding_on_the_edge_moves_every_sample(servers):
    origin, edge = servers
    here = served("periodic", read(origin, session_identity("sqlite", IDENTITY), "periodic", "0-"))
    there = served("periodic", read(edge, "edge-offset", "periodic", "0-"))
    assert there == [(channel, t + 7 * S, value) for channel, t, value in here]


def test_the_edge_health_follows_the_origin(servers):
    origin, edge = servers
    assert get(edge.url("/health"))[0] == 200
    assert get(origin.url("/rta/v2/sources/sqlite/"))[0] == 200
    origin.process.send_signal(subprocess.signal.SIGSTOP)  # a stalled origin: no answer, not a refusal
    try:
        status, _, body = get(edge.url("/health"), timeout=WAIT)
        assert status == 503 and b"sqlite" in body and str(origin.port).encode() not in body
    finally:
        origin.process.send_signal(subprocess.signal.SIGCONT)
    assert get(edge.url("/health"))[0] == 200


def test_identities_outside_the_root_are_refused_over_http(servers):
    origin, _ = servers
    for identity in ("../files/laps/run 1.sqlite", "/etc/passwd", os.path.join("laps", "..", "..", "x")):
        url = origin.url(f"/rta/v2/sources/sqlite/rta/v2/data/{quote(identity, safe='')}/periodic/0-")
        status, _, body = get(url)
        assert status == 404 and b"passwd" not in body
