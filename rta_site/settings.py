"""Settings for the RTA server, all taken from ``RTA_*`` environment variables.

Every default runs on a fresh machine: SQLite under ./var, in-process live
buffer and channel layer, data files under ./var/data.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from rta_site import protos as _protos

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)


# --- reading RTA_* variables: a malformed value stops the start with one line (manage.py prints it) ---


def _env(name):
    """The variable's value, stripped; None when unset or blank (the default applies)."""
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def _invalid(name, value, allowed):
    return ImproperlyConfigured(f"{name}={value!r} is not valid: {allowed}")


def _range(kind, minimum, maximum):
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} of at least {minimum}"
    return f"{kind} of at most {maximum}" if maximum is not None else kind


def env_bool(name, default=False):
    value = _env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise _invalid(name, value, "expected true or false (or 1/0, yes/no, on/off)")


def _env_number(name, default, parse, kind, minimum, maximum):
    value = _env(name)
    if value is None:
        return default
    try:
        number = parse(value)
    except ValueError:
        number = None
    if (
        number is None
        or number != number  # NaN
        or number in (float("inf"), float("-inf"))
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
    ):
        raise _invalid(name, value, f"expected {_range(kind, minimum, maximum)}")
    return number


def env_int(name, default, minimum=None, maximum=None):
    return _env_number(name, default, int, "an integer", minimum, maximum)


def env_float(name, default, minimum=None, maximum=None):
    return _env_number(name, default, float, "a number", minimum, maximum)


def env_choice(name, default, choices):
    value = _env(name)
    if value is None:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise _invalid(name, value, f"expected one of {', '.join(choices)}")


def _database(url, conn_max_age):
    try:
        return dj_database_url.parse(url, conn_max_age=conn_max_age)
    except ValueError:  # dj-database-url's errors (unknown scheme, unparsable URL) are ValueErrors
        shown = "…@" + url.rsplit("@", 1)[1] if "@" in url else url  # no credentials in the message
        raise _invalid("RTA_DATABASE_URL", shown, "expected postgres://user@host:port/name or sqlite:///path") from None


# Generated protobuf modules live beside the .proto files; make them importable.
_protos.ensure_importable()

# SECRET_KEY: RTA_SECRET_KEY, else generated once under the data path (the authentication block below).
DEBUG = env_bool("RTA_DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("RTA_ALLOWED_HOSTS", "*").split(",") if h.strip()]

RTA_HTTP_PORT = env_int("RTA_HTTP_PORT", 8080, 1, 65535)
RTA_GRPC_PORT = env_int("RTA_GRPC_PORT", 8082, 1, 65535)
RTA_BIND_ADDRESS = os.environ.get("RTA_BIND_ADDRESS", "0.0.0.0")
RTA_ENABLE_GRPC = env_bool("RTA_ENABLE_GRPC", True)
RTA_SERVICE_LABEL = os.environ.get("RTA_SERVICE_LABEL", "RTA Server")
RTA_SERVICE_DESCRIPTION = os.environ.get(
    "RTA_SERVICE_DESCRIPTION", "Open-source ATLAS Remote Telemetry Architecture server"
)
RTA_EXPOSE_DATA_BINDINGS = env_bool("RTA_EXPOSE_DATA_BINDINGS", False)
RTA_REDIS_URL = os.environ.get("RTA_REDIS_URL", "")
RTA_DATA_PATH = Path(os.environ.get("RTA_DATA_PATH") or (VAR_DIR / "data")).resolve()
# Most samples the admin decodes to draw one session plot (the plot is downsampled to pixels anyway).
RTA_ADMIN_PLOT_MAX_SAMPLES = env_int("RTA_ADMIN_PLOT_MAX_SAMPLES", 4_000_000, 1)
# Detail keys sorted often enough to deserve an index each (asc + desc; PostgreSQL), e.g. "Driver,Lap".
RTA_INDEXED_DETAILS = [k.strip() for k in os.environ.get("RTA_INDEXED_DETAILS", "").split(",") if k.strip()]
RTA_MAX_PAGE_SIZE = env_int("RTA_MAX_PAGE_SIZE", 10000, 1)
RTA_METAMODEL_MAX_VALUES = env_int("RTA_METAMODEL_MAX_VALUES", 200, 0)
# Metamodel detail-value answers a server process keeps, each re-validated against the data on every
# request (sessions_app.services.metamodel_cache); 0 computes every answer afresh.
RTA_METAMODEL_CACHE_ENTRIES = env_int("RTA_METAMODEL_CACHE_ENTRIES", 64, 0)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "rta_site",
    "oauth2_provider",
    "rta_site.auth",
    "sessions_app",
    "config_app",
    "data_app",
]

MIDDLEWARE = [
    "rta_site.monitoring.metrics.MetricsMiddleware",
    "rta_site.request_limits.BodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "rta_site.auth.middleware.BearerTokenMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "rta_site.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "rta_site.asgi.application"

# Connections held at most by this process's PostgreSQL pool (0 = no pool, one connection per thread).
RTA_DATABASE_POOL_SIZE = env_int("RTA_DATABASE_POOL_SIZE", 40, 0)
DATABASES = {
    "default": _database(
        os.environ.get("RTA_DATABASE_URL") or f"sqlite:///{VAR_DIR / 'rta.sqlite3'}",
        env_int("RTA_DATABASE_CONN_MAX_AGE", 60, 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while one writer commits; the timeout rides out short write locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("RTA_DATABASE_PREPARE", True):
    # psycopg prepares a statement run this often on a connection; only the session service's
    # hot-path statements bind on the server (sessions_app.services.updates), the ORM's never.
    # Off behind a transaction-mode PgBouncer older than 1.21, which cannot keep them.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and RTA_DATABASE_POOL_SIZE > 0:
    # Daphne runs each request's sync code in a fresh thread, so thread-bound persistent
    # connections never get reused: a pool saves a PostgreSQL connect (~4 ms) per request.
    # JIT compilation costs more than it saves on the short queries this server runs.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        options="-c jit=off",
        # pg_stat_activity then tells which server process holds which connection.
        application_name=f"rta:{os.getpid()}",
        pool={"min_size": 2, "max_size": RTA_DATABASE_POOL_SIZE, "timeout": 30},
    )

if RTA_REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [RTA_REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(RTA_DATA_PATH)},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.JSONParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "rta_site.api_errors.json_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "RTA Server API",
    "DESCRIPTION": "REST API of the open-source ATLAS Remote Telemetry Architecture server.",
    "VERSION": "v2",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
from rta_site.openapi_paths import APPEND_PATHS  # noqa: E402

SPECTACULAR_SETTINGS["APPEND_PATHS"] = APPEND_PATHS

# RTA_LOG_FORMAT=json: one JSON object a line (time, level, logger, message and the record's fields).
RTA_LOG_FORMAT = env_choice("RTA_LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "rta_site.monitoring.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": RTA_LOG_FORMAT}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("RTA_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# gRPC: one server, every app registers its servicers through a function returning service names.
# Threads for read streams (each open DataReader stream holds one), for write streams (each open
# DataWriter stream, or any call streaming requests, holds one) and for unary calls.
RTA_GRPC_WORKERS = env_int("RTA_GRPC_WORKERS", 64, 1)
RTA_GRPC_WRITE_WORKERS = max(1, env_int("RTA_GRPC_WRITE_WORKERS", 256))
RTA_GRPC_UNARY_WORKERS = max(1, env_int("RTA_GRPC_UNARY_WORKERS", 4))
# A write stream whose client sends nothing for this long is ended (DEADLINE_EXCEEDED); 0: never.
RTA_GRPC_STREAM_IDLE_SECONDS = env_float("RTA_GRPC_STREAM_IDLE_SECONDS", 300.0, 0)
# Streaming calls one client address may hold open at once (more: RESOURCE_EXHAUSTED); 0: no cap.
RTA_GRPC_MAX_STREAMS_PER_PEER = env_int("RTA_GRPC_MAX_STREAMS_PER_PEER", 100, 0)
# Processes serving gRPC on one port (SO_REUSEPORT); more than one uses more than one core.
RTA_GRPC_PROCESSES = max(1, env_int("RTA_GRPC_PROCESSES", 1))
RTA_GRPC_MAX_MESSAGE_BYTES = env_int("RTA_GRPC_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, 1)
RTA_GRPC_STREAM_WINDOW_BYTES = env_int("RTA_GRPC_STREAM_WINDOW_BYTES", 4 * 1024 * 1024, 1)
RTA_GRPC_SERVICES = [
    "sessions_app.grpc.register",
    "config_app.grpc.register",
    "config_app.grpc.register_schema_mappings",
    "data_app.grpc.register",
]

# --- live streaming (issue 6) ---
# The channel layer is channels-redis on RTA_REDIS_URL, else in-memory; so is the live buffer.
if RTA_REDIS_URL:
    # redis-py 8 reads with a 5 s socket timeout by default, which kills channels-redis's 5 s blocking
    # receive (BZPOPMIN) of every idle consumer (channels_redis#422): give reads room beyond it.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": RTA_REDIS_URL, "socket_timeout": 15}]},
        }
    }


RTA_STREAM_TRIM_LENGTH = env_int("RTA_STREAM_TRIM_LENGTH", 10_000, 1)  # entries kept per stream
RTA_STREAM_TRIM_INTERVAL = env_float("RTA_STREAM_TRIM_INTERVAL", 30.0, 0.1)  # seconds between trims
RTA_STREAM_SESSION_TTL = env_float("RTA_STREAM_SESSION_TTL", 3_600.0, 1)  # directory entry expiry (s)
RTA_STREAM_TIME_RANGE_INTERVAL = max(0.1, env_float("RTA_STREAM_TIME_RANGE_INTERVAL", 0.1, 0))  # <= 10 Hz
# Session changes (JSON, time range) reach the directory at once after a quiet spell, then batched this
# far apart: rendering every live session's JSON for every update would cost more than the updates.
RTA_STREAM_SESSION_PUBLISH_INTERVAL = max(0.1, env_float("RTA_STREAM_SESSION_PUBLISH_INTERVAL", 1.0, 0))
RTA_STREAM_BURST_BYTES = env_int("RTA_STREAM_BURST_BYTES", 64 * 1024, 1)  # burst target before LZ4
RTA_STREAM_WRITER_LINGER_MS = env_float("RTA_STREAM_WRITER_LINGER_MS", 10.0, 0)  # writer batching: at most ...
RTA_STREAM_WRITER_IDLE_MS = env_float("RTA_STREAM_WRITER_IDLE_MS", 1.0, 0)  # ... or once the writer pauses
RTA_STREAM_WRITER_MAX_PENDING_BYTES = env_int("RTA_STREAM_WRITER_MAX_PENDING_BYTES", 64 * 1024 * 1024, 1)
RTA_STREAM_BATCH_DELAY_MS = env_float("RTA_STREAM_BATCH_DELAY_MS", 5.0, 0)  # WebSocket batching delay
RTA_STREAM_MAX_SENDS_PER_SECOND = env_int("RTA_STREAM_MAX_SENDS_PER_SECOND", 5000, 1)  # stretches it with many clients
RTA_STREAM_CLIENT_MAX_BUFFER_BYTES = env_int("RTA_STREAM_CLIENT_MAX_BUFFER_BYTES", 16 * 1024 * 1024, 1)
RTA_STREAM_LIVE_CHECK_INTERVAL = env_float("RTA_STREAM_LIVE_CHECK_INTERVAL", 1.0, 0.01)  # writers re-read session state
# Longest a WebSocket may stay open, in seconds; -1 (default): as long as the session streams
# (a 24-hour race is followed from start to finish).
RTA_WEBSOCKET_MAX_SECONDS = env_int("RTA_WEBSOCKET_MAX_SECONDS", -1, -1)
RTA_STREAM_TRIMMER = env_bool("RTA_STREAM_TRIMMER", True)  # `serve` runs the trimmer

# --- Advanced Streams ingest (issue 7) ---
# Seconds between flushes of ingested data; Kafka offsets are committed after each flush.
RTA_INGEST_FLUSH_SECONDS = env_float("RTA_INGEST_FLUSH_SECONDS", 2.0, 0.01)
# Buffered (not yet flushed) ingest data that forces an early flush.
RTA_INGEST_FLUSH_BYTES = env_int("RTA_INGEST_FLUSH_BYTES", 256 * 1024 * 1024, 1)
# Consumer group of manage.py ingest_streams when --group is not given.
RTA_INGEST_GROUP = os.environ.get("RTA_INGEST_GROUP") or "rta-ingest"
# Seconds before dependencies that were missing are looked up again.
RTA_INGEST_RETRY_SECONDS = env_float("RTA_INGEST_RETRY_SECONDS", 5.0, 0)
# A stream silent this long no longer holds back the committed offset of its partition.
RTA_INGEST_IDLE_SECONDS = env_float("RTA_INGEST_IDLE_SECONDS", 300.0, 0)
# Largest dependency document /api/dependencies accepts.
RTA_DEPENDENCY_MAX_BYTES = env_int("RTA_DEPENDENCY_MAX_BYTES", 32 * 1024 * 1024, 1)
# Largest config PutConfig / PutConfigStream accept (a JSON config is also validated in memory).
RTA_CONFIG_MAX_BYTES = env_int("RTA_CONFIG_MAX_BYTES", 256 * 1024 * 1024, 1)

# --- data store writes ---
# Bytes a write stream may buffer before it flushes in the foreground (half of it starts a background flush).
RTA_DATA_BUFFER_BYTES = env_int("RTA_DATA_BUFFER_BYTES", 32 * 1024 * 1024, 1)
# Seconds buffered data may wait before it is flushed (checked as items arrive; 0 = off).
RTA_DATA_FLUSH_AGE = env_float("RTA_DATA_FLUSH_AGE", 10.0, 0)
# LZ4 level for stored chunks: 0 fast (default), 1-12 high compression (smaller, slower writes).
RTA_DATA_LZ4_LEVEL = env_int("RTA_DATA_LZ4_LEVEL", 0, 0, 12)
# How chunks a data binding transformed go out: none (default: no compression time, about 2x the read rate of
# the decoding path and of a gateway's offset read, docs/benchmarks.md) or lz4 (about half the bytes).
RTA_DATA_TRANSFORMED_COMPRESSION = env_choice("RTA_DATA_TRANSFORMED_COMPRESSION", "none", ("lz4", "none"))

# --- object storage and roles (issue 18; data_app.store.objects, docs/object-storage.md) ---
# Where chunks and config blobs live: file (under RTA_DATA_PATH) or s3 (an S3-compatible bucket).
RTA_STORE = env_choice("RTA_STORE", "file", ("file", "s3"))
RTA_S3_BUCKET = os.environ.get("RTA_S3_BUCKET", "").strip()
# Key prefix inside the bucket ("" or ending in "/"; several servers share one prefix, separate stores don't).
RTA_S3_PREFIX = os.environ.get("RTA_S3_PREFIX", "").strip().strip("/")
RTA_S3_PREFIX = RTA_S3_PREFIX + "/" if RTA_S3_PREFIX else ""
# Endpoint of an S3-compatible server (MinIO, Ceph...); empty = AWS. Credentials: the standard AWS_* variables.
RTA_S3_ENDPOINT_URL = os.environ.get("RTA_S3_ENDPOINT_URL", "").strip()
if RTA_STORE == "s3" and not RTA_S3_BUCKET:
    raise _invalid("RTA_S3_BUCKET", "", "expected a bucket name when RTA_STORE=s3")
# Roles (the toolkit's EnableWrite/EnableRead): a writer-less instance refuses WriteDataStream.
RTA_ENABLE_DATA_WRITER = env_bool("RTA_ENABLE_DATA_WRITER", True)
RTA_ENABLE_DATA_READER = env_bool("RTA_ENABLE_DATA_READER", True)
if RTA_STORE == "s3":  # config blobs in the bucket too (configs/ under the prefix)
    STORAGES["default"] = {
        "BACKEND": "data_app.store.objects.configs.ConfigBlobStorage",
        "OPTIONS": {},
    }

# --- HTTP server limits (issue 16; rta_site.http_server, rta_site.request_limits) ---
# Largest request body of any endpoint without a limit of its own (/api/dependencies takes
# RTA_DEPENDENCY_MAX_BYTES, the admin's config upload RTA_CONFIG_MAX_BYTES): refused with 413.
RTA_HTTP_MAX_BODY_BYTES = env_int("RTA_HTTP_MAX_BODY_BYTES", 2_621_440, 0)
DATA_UPLOAD_MAX_MEMORY_SIZE = RTA_HTTP_MAX_BODY_BYTES
# Seconds a request may take from its first byte to the end of its headers (408 past it); 0: no limit.
RTA_HTTP_HEADER_TIMEOUT = env_float("RTA_HTTP_HEADER_TIMEOUT", 20.0, 0)
# Seconds a request body may take to arrive once its headers are in (408 past it); 0: no limit.
RTA_HTTP_BODY_TIMEOUT = env_float("RTA_HTTP_BODY_TIMEOUT", 300.0, 0)
# Seconds a connection may stay open without a request in progress (keep-alive); 0: no limit.
RTA_HTTP_IDLE_TIMEOUT = env_float("RTA_HTTP_IDLE_TIMEOUT", 75.0, 0)
# Seconds a streamed response waits for a client that takes no data before dropping it; 0: no limit.
RTA_HTTP_SEND_TIMEOUT = env_float("RTA_HTTP_SEND_TIMEOUT", 60.0, 0)
# Response bytes all clients that do not keep up may hold in this process (each holds the block it is
# sent and the one read ahead); past it the client stalled longest is dropped. 0: no limit.
RTA_HTTP_RESPONSE_BUFFER_BYTES = env_int("RTA_HTTP_RESPONSE_BUFFER_BYTES", 512 * 1024 * 1024, 0)
# `serve` logs one line per HTTP request (logger rta_site.access): method, path, status, bytes, duration.
RTA_ACCESS_LOG = env_bool("RTA_ACCESS_LOG", True)

# --- authentication and transport security (issue 15; docs/security.md) ---
from rta_site.auth import keys as _keys  # noqa: E402
from rta_site.auth.provider import provider_settings as _provider_settings  # noqa: E402

RTA_SECRETS_PATH = RTA_DATA_PATH / "secrets"


def _kept_secret(path, make, variable):
    try:
        return _keys.kept_secret(path, make)
    except OSError as exc:
        raise _invalid(variable, "", f"set it, or let the server keep one in {path} ({exc.strerror})") from None


# Never a fixed string: generated once and kept (0600) when not given. Set it alike on every machine of a deployment.
SECRET_KEY = _env("RTA_SECRET_KEY") or _kept_secret(
    RTA_SECRETS_PATH / "secret_key", _keys.new_secret_key, "RTA_SECRET_KEY"
)
RTA_AUTH_ENABLED = env_bool("RTA_AUTH_ENABLED", False)
# The OpenID Connect issuer URL (discovery at {authority}/.well-known/openid-configuration), or "embedded".
RTA_AUTH_AUTHORITY = (_env("RTA_AUTH_AUTHORITY") or "").rstrip("/")
RTA_AUTH_AUDIENCE = _env("RTA_AUTH_AUDIENCE") or "rta"
RTA_AUTH_READ_SCOPE = _env("RTA_AUTH_READ_SCOPE") or "rta.read"
RTA_AUTH_WRITE_SCOPE = _env("RTA_AUTH_WRITE_SCOPE") or "rta.write"
# Claim listing the folder identities a token is limited to; unset: tokens are not folder-restricted.
RTA_AUTH_FOLDERS_CLAIM = _env("RTA_AUTH_FOLDERS_CLAIM") or ""
RTA_AUTH_LEEWAY_SECONDS = env_int("RTA_AUTH_LEEWAY_SECONDS", 30, minimum=0, maximum=300)
# The address clients reach this server at; the embedded authority's issuer is {RTA_PUBLIC_URL}/o.
RTA_PUBLIC_URL = (_env("RTA_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/")
# Life of the embedded authority's access tokens, in seconds.
RTA_AUTH_TOKEN_SECONDS = env_int("RTA_AUTH_TOKEN_SECONDS", 3600, minimum=60)
RTA_AUTH_SIGNING_KEY_FILE = Path(_env("RTA_AUTH_SIGNING_KEY_FILE") or RTA_SECRETS_PATH / "oidc-signing-key.pem")
if RTA_AUTH_ENABLED and not RTA_AUTH_AUTHORITY:
    raise _invalid("RTA_AUTH_AUTHORITY", "", "set an issuer URL, or embedded, when RTA_AUTH_ENABLED is on")
if RTA_AUTH_AUTHORITY not in ("", "embedded") and not RTA_AUTH_AUTHORITY.startswith(("https://", "http://")):
    raise _invalid("RTA_AUTH_AUTHORITY", RTA_AUTH_AUTHORITY, "expected an http(s) issuer URL, or embedded")
if not RTA_PUBLIC_URL.startswith(("https://", "http://")):
    raise _invalid("RTA_PUBLIC_URL", RTA_PUBLIC_URL, "expected an http(s) URL")
OAUTH2_PROVIDER = _provider_settings(
    RTA_PUBLIC_URL,
    (
        _kept_secret(RTA_AUTH_SIGNING_KEY_FILE, _keys.new_rsa_private_key_pem, "RTA_AUTH_SIGNING_KEY_FILE")
        if RTA_AUTH_AUTHORITY == "embedded"
        else None
    ),
    RTA_AUTH_TOKEN_SECONDS,
)
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"  # named, so migrations can refer to it
LOGIN_URL = "/o/login/"  # where the embedded authority's authorization code flow signs users in
# Native apps' loopback redirects (RFC 8252) need http:// redirect URIs.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]

# TLS: with a certificate and key, `serve` also listens HTTPS/WSS on RTA_HTTPS_PORT and gRPC uses TLS.
RTA_TLS_CERT_FILE = _env("RTA_TLS_CERT_FILE") or ""
RTA_TLS_KEY_FILE = _env("RTA_TLS_KEY_FILE") or ""
if bool(RTA_TLS_CERT_FILE) != bool(RTA_TLS_KEY_FILE):
    _missing = "RTA_TLS_KEY_FILE" if RTA_TLS_CERT_FILE else "RTA_TLS_CERT_FILE"
    raise _invalid(_missing, "", "set RTA_TLS_CERT_FILE and RTA_TLS_KEY_FILE together, or neither")
RTA_HTTPS_PORT = env_int("RTA_HTTPS_PORT", 8081, minimum=0, maximum=65535)
# Deployments serving the admin over HTTPS only turn these on (manage.py check --deploy asks for them).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("RTA_SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = env_int("RTA_HSTS_SECONDS", 0, minimum=0)

# --- data federation (issue 14; docs/federation.md) ---
from urllib.parse import urlsplit as _urlsplit  # noqa: E402


def _data_services(name):
    """``source=URL,...`` as ``{source: base URL without trailing slashes}``; each URL http(s)://host[:port][/path]."""
    value = _env(name)
    services = {}
    for pair in value.split(",") if value else []:
        source, sep, url = (part.strip() for part in pair.partition("="))
        try:
            parts = _urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if not (sep and source and port_ok and parts.scheme in ("http", "https") and parts.hostname):
            raise _invalid(name, value, f"{pair.strip()!r} is not source=http(s)://host[:port][/path]")
        if parts.query or parts.fragment:
            raise _invalid(name, value, f"the URL of {source!r} has a query or fragment: give the base URL only")
        if source in services:
            raise _invalid(name, value, f"source {source!r} is listed twice")
        services[source] = url.rstrip("/")
    return services


# Serve the data-service interface (GET /rta/v2/data/{dataIdentity}/...): how a gateway reads this server's store.
RTA_EXPOSE_DATA_SERVICE = env_bool("RTA_EXPOSE_DATA_SERVICE", False)
# Bindings whose source is listed are read from that data service over HTTP: "source=URL,source2=URL2".
RTA_DATA_SERVICES = _data_services("RTA_DATA_SERVICES")
# Seconds a data service may take to accept a connection, or between two reads, before a 504.
RTA_DATA_SERVICE_TIMEOUT = env_float("RTA_DATA_SERVICE_TIMEOUT", 30.0, 0.001)
# Seconds /health waits for each data service's GET / answer.
RTA_DATA_SERVICE_HEALTH_TIMEOUT = env_float("RTA_DATA_SERVICE_HEALTH_TIMEOUT", 2.0, 0.001)
# httpx logs every request it makes at INFO, URL and all: a data service's URL holds private data identities.
LOGGING["loggers"]["httpx"] = {"level": "WARNING"}

# --- built-in data sources: SQLite files and PostgreSQL tables (issue 17; docs/data-sources.md) ---
# Serve the SQLite files under this folder in place (the toolkit example's layout); unset: no SQLite source.
RTA_SQLITE_ROOT = _env("RTA_SQLITE_ROOT") or ""
# The data source name the SQLite files are bound under.
RTA_SQLITE_SOURCE = _env("RTA_SQLITE_SOURCE") or "sqlite"


def _sql_sources(name):
    """``source=postgres://...,source2=...`` as ``{source: URL}``; errors name sources, never URLs."""
    value = _env(name)
    sources = {}
    for pair in value.split(",") if value else []:
        source, sep, url = (part.strip() for part in pair.partition("="))
        if not (sep and source and url.startswith(("postgres://", "postgresql://"))):
            raise _invalid(name, "…", f"entry {len(sources) + 1} is not source=postgres://user@host:port/database")
        if source in sources:
            raise _invalid(name, "…", f"source {source!r} is listed twice")
        sources[source] = url
    return sources


# PostgreSQL / TimescaleDB databases whose tables are served in place: "source=postgres://...,source2=...".
RTA_SQL_SOURCES = _sql_sources("RTA_SQL_SOURCES")
# psycopg_pool logs each failed reconnection with the server's address: /health names the source instead.
LOGGING["loggers"]["psycopg.pool"] = {"level": "ERROR"}

# --- built-in data sources: Parquet files and InfluxDB 1.x (issue 17; docs/data-sources.md) ---
# Serve the Parquet files (and folders of them) under this folder in place; unset: no Parquet source.
RTA_PARQUET_ROOT = _env("RTA_PARQUET_ROOT") or ""
# The data source name the Parquet files are bound under.
RTA_PARQUET_SOURCE = _env("RTA_PARQUET_SOURCE") or "parquet"
# An InfluxDB 1.x server's base URL (http(s)://host:port) serves its measurements in place; unset: none.
RTA_INFLUX_URL = (_env("RTA_INFLUX_URL") or "").rstrip("/")
if RTA_INFLUX_URL:
    try:
        _influx = _urlsplit(RTA_INFLUX_URL)
        _influx_ok = _influx.scheme in ("http", "https") and bool(_influx.hostname) and not _influx.query
        _influx_ok = _influx_ok and (_influx.port is None or _influx.port > 0)
    except ValueError:
        _influx_ok = False
    if not _influx_ok:  # shown without credentials
        raise _invalid("RTA_INFLUX_URL", RTA_INFLUX_URL.rsplit("@", 1)[-1], "expected http(s)://host[:port][/path]")
RTA_INFLUX_SOURCE = _env("RTA_INFLUX_SOURCE") or "influx"
# Defaults for the schema mapping's database / retention_policy / measurement properties.
RTA_INFLUX_DATABASE = _env("RTA_INFLUX_DATABASE") or ""
RTA_INFLUX_RETENTION_POLICY = _env("RTA_INFLUX_RETENTION_POLICY") or "autogen"
RTA_INFLUX_MEASUREMENT = _env("RTA_INFLUX_MEASUREMENT") or ""
# The highest sample rate (Hz) of the data: a hint for the chunk grid of fields with no detectable interval.
RTA_INFLUX_MAX_FREQUENCY = env_float("RTA_INFLUX_MAX_FREQUENCY", 0.0, 0)
# Credentials for InfluxDB's authentication (sent as u/p; never logged or shown).
RTA_INFLUX_USERNAME = _env("RTA_INFLUX_USERNAME") or ""
RTA_INFLUX_PASSWORD = _env("RTA_INFLUX_PASSWORD") or ""
