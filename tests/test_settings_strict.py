"""A malformed RTA_* setting stops the start with one line naming it (issue 16 #13).

Each case runs ``manage.py check`` in a fresh process with one bad variable: it
must exit 2 with a single line on stderr naming the variable, the value and
what is allowed, and no traceback.
"""

import os
import subprocess
import sys

import pytest

from tests.test_serve import ROOT

CASES = [
    ("RTA_HTTP_PORT", "abc", "an integer from 1 to 65535"),
    ("RTA_HTTP_PORT", "70000", "an integer from 1 to 65535"),
    ("RTA_DATA_BUFFER_BYTES", "-1", "an integer of at least 1"),
    ("RTA_DATA_FLUSH_AGE", "soon", "a number of at least 0"),
    ("RTA_DATA_LZ4_LEVEL", "13", "an integer from 0 to 12"),
    ("RTA_INGEST_FLUSH_SECONDS", "nan", "a number"),
    ("RTA_DEBUG", "maybe", "true or false"),
    ("RTA_LOG_FORMAT", "xml", "one of plain, json"),
    ("RTA_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("RTA_HTTP_SEND_TIMEOUT", "-5", "a number of at least 0"),
]


def check(env_overrides, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTA_")}
    env["RTA_DATABASE_URL"] = f"sqlite:///{tmp_path / 'rta.sqlite3'}"
    env["RTA_DATA_PATH"] = str(tmp_path / "data")
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("name", "value", "allowed"), CASES)
def test_a_malformed_setting_stops_the_start_with_one_line(name, value, allowed, tmp_path):
    result = check({name: value}, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and repr(value) in lines[0] and allowed in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_a_malformed_database_url_is_named_without_its_password(tmp_path):
    result = check({"RTA_DATABASE_URL": "nosuchdb://user:s3cret@db.example/rta"}, tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "RTA_DATABASE_URL" in line and "db.example/rta" in line and "postgres://" in line
    assert "s3cret" not in line


def test_well_formed_settings_start(tmp_path):
    result = check({"RTA_HTTP_PORT": " 8090 ", "RTA_DEBUG": "off", "RTA_LOG_FORMAT": "JSON"}, tmp_path)
    assert result.returncode == 0, result.stderr
