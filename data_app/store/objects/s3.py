"""The S3 back end: immutable objects, ranged reads, over boto3.

boto3 rather than obstore: it is what every S3-compatible server documents and
tests against, its clients are thread-safe (one per process, shared by the
read-ahead and multipart threads) and its body reads release the GIL; bench
figures are in docs/object-storage.md.

Ranged GETs, the read path's one request, skip botocore's per-call pipeline (about 1 ms of
CPU a request: parameter validation, event hooks, header signing, response parsing): the
object's URL is presigned once (the signature covers the key, not the ``Range`` header)
and reused for every range of it for a minute, and the GET goes through the client's own
HTTP session (its pool, proxies, TLS settings, timeouts). Anything but a complete 206
answer is asked again through ``get_object``, so retries and error messages stay botocore's.

Every call is counted (``rta_store_object_requests_total{op}``) so the cost of a
workload on a cloud bill can be estimated, and every failure becomes a
``rta_core.errors`` error clients understand (UNAVAILABLE / 503) with a message
that names neither the endpoint nor a data identity.
"""

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import boto3
import urllib3
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from django.conf import settings
from prometheus_client import Counter

from rta_core.errors import Unavailable

log = logging.getLogger(__name__)

REQUESTS = Counter("rta_store_object_requests_total", "Requests made to the object store", ["op"])
MULTIPART_THRESHOLD = 32 * 1024 * 1024  # a flush this large goes up in parts, several at once
PART_SIZE = 16 * 1024 * 1024
MARKER_KEY = ".rta-store"
CONNECT_TIMEOUT = 5  # seconds
READ_TIMEOUT = 60  # seconds without a byte from the store: the request fails (after botocore's retries)
IO_THREADS = 16  # per process: read-ahead and multipart parts
# A presigned GET URL is valid for PRESIGN_SECONDS and reused for URL_REUSE_SECONDS: long enough
# for every range of an object a response reads, short beside the signing credentials' refresh
# (botocore refreshes temporary credentials 10-15 minutes before they expire).
PRESIGN_SECONDS = 900
URL_REUSE_SECONDS = 60
URL_MEMO_SIZE = 4096


class ObjectStoreUnavailable(Unavailable):
    """The object store failed or could not be reached (the client may retry; nothing unacknowledged is kept)."""


class ObjectMissing(ObjectStoreUnavailable):
    """An object an index row named is gone (removed by compaction after its grace period); try again."""


def _describe(exc):
    """A short, endpoint-free description of a botocore failure."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or (code == "404" and exc.operation_name == "HeadBucket"):
            return "the bucket does not exist"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"access denied ({code})"
        return f"{code} (HTTP {status})" if status else code
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return "no answer in time"
    if isinstance(exc, EndpointConnectionError):
        return "unreachable"
    return type(exc).__name__


@contextmanager
def translated(op):
    """Count one request of ``op`` and turn botocore's errors into ``ObjectStoreUnavailable``."""
    REQUESTS.labels(op).inc()
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404") and op in ("get", "head"):
            raise ObjectMissing("a stored chunk's object is gone (compacted meanwhile?); try again") from None
        log.warning("object store %s failed: %s", op, exc)
        raise ObjectStoreUnavailable(f"object store {op} failed: {_describe(exc)}") from None
    except BotoCoreError as exc:
        log.warning("object store %s failed: %s", op, exc)
        raise ObjectStoreUnavailable(f"object store {op} failed: {_describe(exc)}") from None


class S3ObjectStore:
    """Put, ranged get, delete and list of objects under one bucket and prefix."""

    def __init__(self, bucket, prefix="", endpoint_url=None):
        self.bucket, self.prefix = bucket, prefix
        config = Config(
            retries={"mode": "standard", "max_attempts": 4},  # 500/503/throttling retried with back-off
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            max_pool_connections=32,
            # Checksums only where S3 requires them: cheaper, and accepted by every S3-compatible server.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, config=config
        )
        self._pool = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="s3-io")
        # The client's own HTTP session (pool, proxies, TLS, timeouts) for the presigned GETs; botocore
        # keeps it on a private attribute, so without it every GET goes through get_object.
        self._http = getattr(getattr(self.client, "_endpoint", None), "http_session", None)
        self._urls = {}  # object name -> (presigned GET URL, monotonic time it stops being reused)

    def key(self, name):
        return self.prefix + name

    # --- writing ---------------------------------------------------------------------------

    def put(self, name, parts):
        """Store ``parts`` (bytes-like, or a list of them) as object ``name``; returns its size."""
        body = b"".join(parts) if isinstance(parts, list) else bytes(parts)
        if len(body) >= MULTIPART_THRESHOLD:
            self._put_multipart(name, memoryview(body))
        else:
            with translated("put"):
                self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=body)
        return len(body)

    def _put_multipart(self, name, body):
        key = self.key(name)
        with translated("multipart-create"):
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:

            def part(number, start):
                with translated("multipart-part"):
                    answer = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload,
                        PartNumber=number,
                        Body=bytes(body[start : start + PART_SIZE]),
                    )
                return {"PartNumber": number, "ETag": answer["ETag"]}

            futures = [self._pool.submit(part, n + 1, start) for n, start in enumerate(range(0, len(body), PART_SIZE))]
            parts = [f.result() for f in futures]
            with translated("multipart-complete"):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            try:
                with translated("multipart-abort"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except ObjectStoreUnavailable:
                log.warning("could not abort a multipart upload (the bucket's lifecycle rules will)")
            raise

    def delete(self, names):
        """Delete objects (up to 1000 a request); missing ones are no error."""
        names = list(names)
        for start in range(0, len(names), 1000):
            batch = names[start : start + 1000]
            with translated("delete"):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self.key(n)} for n in batch], "Quiet": True}
                )
            if answer.get("Errors"):
                raise ObjectStoreUnavailable(f"object store delete failed: {answer['Errors'][0].get('Code')}")

    # --- reading ---------------------------------------------------------------------------

    def get_range(self, name, offset, length):
        """``length`` bytes at ``offset`` of object ``name`` (one ranged GET)."""
        if length == 0:
            return b""
        with translated("get"):
            data = self._presigned_range(name, offset, length) if self._http is not None else None
            if data is None:  # botocore's own request: its retries, its errors
                answer = self.client.get_object(
                    Bucket=self.bucket, Key=self.key(name), Range=f"bytes={offset}-{offset + length - 1}"
                )
                data = answer["Body"].read()
        if len(data) != length:
            raise ObjectStoreUnavailable(f"object store get returned {len(data)} of {length} bytes")
        return data

    def _presigned_range(self, name, offset, length):
        """The range through a presigned URL, or None when the answer is anything but the whole range."""
        request = AWSRequest(
            method="GET",
            url=self._url(name),
            headers={"Range": f"bytes={offset}-{offset + length - 1}"},
            stream_output=True,  # the body is read below, in one piece
        )
        try:
            response = self._http.send(request.prepare())
        except (ConnectTimeoutError, ReadTimeoutError):
            raise  # a full timeout has passed already: not again through get_object
        except BotoCoreError:
            return None
        raw, data = response.raw, None
        try:
            if response.status_code == 206:
                data = raw.read()
            else:  # e.g. 404, 403, 5xx: get_object retries and explains
                self._urls.pop(name, None)
                raw.close()  # not read: the connection is not reused
                return None
        except urllib3.exceptions.ReadTimeoutError as exc:
            raw.close()  # a connection with unread bytes never goes back to the pool
            raise ReadTimeoutError(endpoint_url="object store", error=exc) from None
        except (urllib3.exceptions.HTTPError, OSError):
            raw.close()
            return None
        raw.release_conn()
        return data if data is not None and len(data) == length else None

    def _url(self, name):
        now = time.monotonic()
        memo = self._urls.get(name)
        if memo is not None and memo[1] > now:
            return memo[0]
        if len(self._urls) >= URL_MEMO_SIZE:
            self._urls.clear()
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(name)}, ExpiresIn=PRESIGN_SECONDS
        )
        self._urls[name] = (url, now + URL_REUSE_SECONDS)
        return url

    def get(self, name):
        """A whole (small) object."""
        with translated("get"):
            return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()

    def size(self, name):
        with translated("head"):
            return self.client.head_object(Bucket=self.bucket, Key=self.key(name))["ContentLength"]

    def exists(self, name):
        try:
            self.size(name)
        except ObjectMissing:
            return False
        return True

    def list(self, under=""):
        """``(name, size, last modified epoch seconds)`` of every object whose name starts with ``under``."""
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.key(under)}
            if token:
                kwargs["ContinuationToken"] = token
            with translated("list"):
                answer = self.client.list_objects_v2(**kwargs)
            for entry in answer.get("Contents", ()):
                yield entry["Key"][len(self.prefix) :], entry["Size"], entry["LastModified"].timestamp()
            if not answer.get("IsTruncated"):
                return
            token = answer["NextContinuationToken"]

    def check_bucket(self):
        """Raise ``ObjectStoreUnavailable`` unless the bucket answers (HEAD bucket)."""
        with translated("head-bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def read_ahead(self, fn, *args):
        """``fn(*args)`` on the shared I/O pool (a future)."""
        return self._pool.submit(fn, *args)


_stores = {}
_stores_lock = threading.Lock()


def get_store():
    """One ``S3ObjectStore`` per (bucket, prefix, endpoint) in this process (boto3 clients are thread-safe).

    Keyed by the process id too: a process forked after using the store (``rungrpc --processes``)
    makes its own client, connections and threads rather than sharing its parent's.
    """
    spec = (settings.RTA_S3_BUCKET, settings.RTA_S3_PREFIX, settings.RTA_S3_ENDPOINT_URL)
    key = (os.getpid(), *spec)
    store = _stores.get(key)
    if store is None:
        with _stores_lock:
            store = _stores.get(key)
            if store is None:
                store = _stores[key] = S3ObjectStore(*spec)
    return store
