"""Config blobs in the bucket (``RTA_STORE=s3``): publish, read, stream, delete; nothing on local disk."""

import json
import threading

import pytest
from django.db import connection

from config_app.models import FFC_CONTENT_TYPE, JSON_CONTENT_TYPE, Config
from config_app.services import store
from rta_core.errors import NotFound
from tests.s3_server import bucket_keys
from tests.test_configs_validation import demo_config

DEMO = json.dumps(demo_config()).encode()
pytestmark = pytest.mark.django_db(transaction=True)


def _keys(s3_store, under="store/configs/"):
    return bucket_keys(s3_store["RTA_S3_ENDPOINT_URL"], s3_store["RTA_S3_BUCKET"], under)


def test_a_config_is_an_object_named_by_its_hash_and_reads_back(s3_store, settings, tmp_path):
    assert store.put_config("car/../42 «cfg»", JSON_CONTENT_TYPE, DEMO)
    config = Config.objects.get()
    assert _keys(s3_store) == ["store/" + config.storage_name]
    assert "42" not in config.storage_name
    assert store.read_config("car/../42 «cfg»")[1] == DEMO
    assert store.read_document(config) == demo_config()
    assert b"".join(store.iter_pieces(store.open_config(config), piece_size=100)) == DEMO
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing of it on local disk


def test_big_configs_stream_in_and_out_and_immutability_holds(s3_store):
    blob = bytes(range(256)) * (40 * 1024 * 1024 // 256 + 3)  # over the multipart threshold
    assert store.put_config_stream(
        "big", FFC_CONTENT_TYPE, (blob[i : i + (1 << 20)] for i in range(0, len(blob), 1 << 20))
    )
    assert not store.put_config("big", FFC_CONTENT_TYPE, b"other bytes")  # published once, never overwritten
    config = store.get_config("big")
    assert config.size == len(blob)
    assert b"".join(store.iter_pieces(store.open_config(config))) == blob


def test_delete_removes_the_object_after_commit(s3_store):
    store.put_config("gone", FFC_CONTENT_TYPE, b"bytes")
    assert len(_keys(s3_store)) == 1
    assert store.delete_config("gone")
    assert _keys(s3_store) == []
    with pytest.raises(NotFound):
        store.read_config("gone")


def test_concurrent_puts_of_one_identifier_have_one_winner(s3_store):
    results, barrier = [], threading.Barrier(4)

    def put(n):
        try:
            barrier.wait()
            results.append(store.put_config("race", FFC_CONTENT_TYPE, f"writer {n}".encode()))
        finally:
            connection.close()

    threads = [threading.Thread(target=put, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    config, data = store.read_config("race")
    assert data.startswith(b"writer ") and len(_keys(s3_store)) == 1
