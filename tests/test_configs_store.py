"""The config store service layer: publication, immutability, storage layout, concurrency, deletion."""

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from config_app.models import FFC_CONTENT_TYPE, JSON_CONTENT_TYPE, Config
from config_app.services import store
from rta_core.errors import InvalidArgument, NotFound, TooLarge
from tests.test_configs_validation import demo_config

DEMO = json.dumps(demo_config()).encode()

HOSTILE_IDENTIFIERS = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b/c",
    "..",
    ".",
    "C:\\Windows\\system32",
    "%2e%2e%2fx",
    "🏎️ telemetry ✓ «config»",
    "line\nbreak\ttab",
    " spaced ",
    "?query#fragment",
    "x" * store.MAX_IDENTIFIER_LENGTH,
]


def stored_files():
    root = Path(settings.RTA_DATA_PATH)
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_all_files_under_store():
    """Every file in the test's directory is a config file under RTA_DATA_PATH/configs."""
    root = Path(settings.RTA_DATA_PATH)
    configs = root / "configs"
    test_dir = root.parent
    for path in test_dir.rglob("*"):
        if path.is_file():
            assert path.resolve().is_relative_to(configs.resolve()), path
    for path in stored_files():
        # configs/<h[:2]>/<h>, h a SHA-256 (a storage-chosen suffix at most): nothing of the identifier's text
        assert re.fullmatch(r"[0-9a-f]{64}(_[0-9A-Za-z]{7})?", path.name), path
        assert path.parent.name == path.name[:2] and path.parent.parent == configs, path
    return stored_files()


@pytest.mark.django_db
def test_put_and_read_back():
    assert store.put_config("cfg-1", JSON_CONTENT_TYPE, DEMO) is True
    config, data = store.read_config("cfg-1")
    assert data == DEMO
    assert config.size == len(DEMO)
    assert config.sha256 == hashlib.sha256(DEMO).hexdigest()
    assert config.content_type == JSON_CONTENT_TYPE
    key = hashlib.sha256(b"cfg-1").hexdigest()
    assert config.identifier_hash == key
    assert config.storage_name == f"configs/{key[:2]}/{key}"
    assert store.has_config("cfg-1") and not store.has_config("cfg-2")


@pytest.mark.django_db
def test_content_type_is_case_insensitive_and_checked():
    assert store.put_config("ffc", "Application/VND.mat.config+FFC ", b"\x00\x01binary")
    assert Config.objects.get().content_type == FFC_CONTENT_TYPE
    for bad in (
        "application/json",
        "",
        "application/vnd.mat.config+xml",
        "application/vnd.mat.config+json; charset=utf-8",
    ):
        with pytest.raises(InvalidArgument, match="unsupported content type"):
            store.put_config("x", bad, DEMO)


@pytest.mark.django_db
def test_published_configs_are_immutable():
    assert store.put_config("cfg", FFC_CONTENT_TYPE, b"first")
    assert store.put_config("cfg", FFC_CONTENT_TYPE, b"second, longer") is False
    assert store.put_config("cfg", JSON_CONTENT_TYPE, DEMO) is False
    assert store.put_config_stream("cfg", FFC_CONTENT_TYPE, iter([b"third"])) is False
    assert store.read_config("cfg")[1] == b"first"
    assert Config.objects.count() == 1 and len(stored_files()) == 1


@pytest.mark.django_db
def test_republishing_does_not_consume_the_stream():
    store.put_config("cfg", FFC_CONTENT_TYPE, b"first")

    def pieces():
        raise AssertionError("the stream of an existing config must not be read")
        yield b""

    assert store.put_config_stream("cfg", FFC_CONTENT_TYPE, pieces()) is False


@pytest.mark.django_db
def test_rejected_configs_leave_nothing_behind():
    bad = demo_config()
    bad["demo"]["channels"][0]["type"] = "u64"
    with pytest.raises(InvalidArgument, match=r"demo\.channels\[0\]\.type"):
        store.put_config_stream(
            "bad", JSON_CONTENT_TYPE, iter([json.dumps(bad).encode()[:10], json.dumps(bad).encode()[10:]])
        )
    with pytest.raises(InvalidArgument, match="config data is empty"):
        store.put_config("empty", FFC_CONTENT_TYPE, b"")
    with pytest.raises(InvalidArgument, match="invalid JSON"):
        store.put_config("text", JSON_CONTENT_TYPE, b"not json")

    def broken():
        yield b"abc"
        raise InvalidArgument("message 2: info may only be sent first, then pieces")

    with pytest.raises(InvalidArgument, match="info may only"):
        store.put_config_stream("broken", FFC_CONTENT_TYPE, broken())
    assert not Config.objects.exists()
    assert stored_files() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "identifier, message",
    [
        ("", "identifier must not be empty"),
        ("x" * (store.MAX_IDENTIFIER_LENGTH + 1), "identifier is 4097 characters long; the limit is 4096"),
        ("x" * 10_000, "the limit is 4096"),
        ("nul\x00byte", "must not contain NUL"),
        ("lone \udc80 surrogate", "not valid Unicode"),
    ],
)
def test_bad_identifiers(identifier, message):
    for call in (
        lambda: store.put_config(identifier, FFC_CONTENT_TYPE, b"x"),
        lambda: store.has_config(identifier),
        lambda: store.get_config(identifier),
        lambda: store.delete_config(identifier),
    ):
        with pytest.raises(InvalidArgument, match=message):
            call()
    assert stored_files() == []


@pytest.mark.django_db
def test_hostile_identifiers_stay_inside_the_store():
    for n, identifier in enumerate(HOSTILE_IDENTIFIERS):
        assert store.put_config(identifier, FFC_CONTENT_TYPE, f"config {n}".encode())
    for n, identifier in enumerate(HOSTILE_IDENTIFIERS):
        config, data = store.read_config(identifier)
        assert (config.identifier, data) == (identifier, f"config {n}".encode())
    files = assert_all_files_under_store()
    assert len(files) == len(HOSTILE_IDENTIFIERS)
    for identifier in HOSTILE_IDENTIFIERS:
        assert store.delete_config(identifier)
    assert not Config.objects.exists()


@pytest.mark.django_db
def test_get_missing_and_too_large():
    with pytest.raises(NotFound, match="config 'nope' not found"):
        store.read_config("nope")
    store.put_config("big", FFC_CONTENT_TYPE, b"x" * 1000)
    with pytest.raises(TooLarge, match="1000 bytes, over the 999-byte message limit: use GetConfigStream"):
        store.read_config("big", max_size=999)
    assert store.read_config("big", max_size=1000)[1] == b"x" * 1000


@pytest.mark.django_db
def test_iter_pieces_is_bounded():
    data = bytes(range(256)) * 41  # 10,496 bytes
    store.put_config("pieces", FFC_CONTENT_TYPE, data)
    pieces = list(store.iter_pieces(store.open_config(store.get_config("pieces")), 1000))
    assert max(map(len, pieces)) == 1000 and len(pieces) == 11 and b"".join(pieces) == data


@pytest.mark.django_db
def test_delete(django_capture_on_commit_callbacks):
    store.put_config("gone", FFC_CONTENT_TYPE, b"bytes")
    assert len(stored_files()) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert store.delete_config("gone") is True
    assert not store.has_config("gone")
    assert stored_files() == []
    assert store.delete_config("gone") is False  # missing: nothing to do, not an error
    # and it can be published again, with new content
    assert store.put_config("gone", FFC_CONTENT_TYPE, b"again")
    assert store.read_config("gone")[1] == b"again"


@pytest.mark.django_db
def test_stale_file_does_not_block_or_corrupt_publication():
    """A file left at the config's name (a crash, a delete in flight) is neither served nor overwritten."""
    key = store.identifier_hash("stale")
    stale = Path(settings.RTA_DATA_PATH) / store.storage_name_for(key)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale bytes")
    assert store.put_config("stale", FFC_CONTENT_TYPE, b"fresh bytes")
    config, data = store.read_config("stale")
    assert data == b"fresh bytes" and config.storage_name != store.storage_name_for(key)
    assert stale.read_bytes() == b"stale bytes"
    assert_all_files_under_store()


@pytest.mark.django_db
def test_uploads_a_killed_process_left_behind_are_swept():
    incoming = Path(settings.RTA_DATA_PATH) / store.INCOMING
    incoming.mkdir(parents=True)
    old, recent = incoming / "put-old.part", incoming / "put-recent.part"
    old.write_bytes(b"half an upload")
    recent.write_bytes(b"an upload in progress")
    day_ago = time.time() - store.STALE_INCOMING_SECONDS - 60
    os.utime(old, (day_ago, day_ago))
    assert store.put_config("swept", FFC_CONTENT_TYPE, b"bytes")
    assert not old.exists() and recent.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_puts_of_one_identifier_have_exactly_one_winner():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL")
    rounds, writers = 3, 4
    for round_ in range(rounds):
        identifier = f"race-{round_}"
        barrier = threading.Barrier(writers)
        results = [None] * writers

        def put(index):
            try:
                barrier.wait()
                results[index] = store.put_config(identifier, FFC_CONTENT_TYPE, f"writer {index} ".encode() * 1000)
            except Exception as exc:  # reported below
                results[index] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=put, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results, key=str) == [False] * (writers - 1) + [True], results
        winner = results.index(True)
        assert store.read_config(identifier)[1] == f"writer {winner} ".encode() * 1000
    assert Config.objects.count() == rounds
    files = assert_all_files_under_store()
    assert len(files) == rounds  # the losers' bytes are gone, incoming files cleaned up
