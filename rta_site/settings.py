"""Settings for the RTA server, all taken from ``RTA_*`` environment variables.

Every default runs on a fresh machine: SQLite under ./var, in-process live
buffer and channel layer, data files under ./var/data.
"""

import os
from pathlib import Path

import dj_database_url

from rta_site import protos as _protos

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


# Generated protobuf modules live beside the .proto files; make them importable.
_protos.ensure_importable()

SECRET_KEY = os.environ.get("RTA_SECRET_KEY") or "rta-insecure-development-key-change-me"
DEBUG = env_bool("RTA_DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("RTA_ALLOWED_HOSTS", "*").split(",") if h.strip()]

RTA_HTTP_PORT = env_int("RTA_HTTP_PORT", 8080)
RTA_GRPC_PORT = env_int("RTA_GRPC_PORT", 8082)
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
RTA_ADMIN_PLOT_MAX_SAMPLES = env_int("RTA_ADMIN_PLOT_MAX_SAMPLES", 4_000_000)
# Detail keys sorted often enough to deserve an index each (asc + desc; PostgreSQL), e.g. "Driver,Lap".
RTA_INDEXED_DETAILS = [k.strip() for k in os.environ.get("RTA_INDEXED_DETAILS", "").split(",") if k.strip()]
RTA_MAX_PAGE_SIZE = env_int("RTA_MAX_PAGE_SIZE", 10000)
RTA_METAMODEL_MAX_VALUES = env_int("RTA_METAMODEL_MAX_VALUES", 200)
# Metamodel detail-value answers a server process keeps, each re-validated against the data on every
# request (sessions_app.services.metamodel_cache); 0 computes every answer afresh.
RTA_METAMODEL_CACHE_ENTRIES = env_int("RTA_METAMODEL_CACHE_ENTRIES", 64)

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
    "sessions_app",
    "config_app",
    "data_app",
]

MIDDLEWARE = [
    "rta_site.monitoring.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
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
RTA_DATABASE_POOL_SIZE = env_int("RTA_DATABASE_POOL_SIZE", 40)
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("RTA_DATABASE_URL") or f"sqlite:///{VAR_DIR / 'rta.sqlite3'}",
        conn_max_age=env_int("RTA_DATABASE_CONN_MAX_AGE", 60),
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("RTA_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# gRPC: one server, every app registers its servicers through a function returning service names.
# Threads for streaming calls (each open DataWriter/DataReader stream holds one) and for unary calls.
RTA_GRPC_WORKERS = env_int("RTA_GRPC_WORKERS", 64)
RTA_GRPC_UNARY_WORKERS = max(1, env_int("RTA_GRPC_UNARY_WORKERS", 4))
# Processes serving gRPC on one port (SO_REUSEPORT); more than one uses more than one core.
RTA_GRPC_PROCESSES = max(1, env_int("RTA_GRPC_PROCESSES", 1))
RTA_GRPC_MAX_MESSAGE_BYTES = env_int("RTA_GRPC_MAX_MESSAGE_BYTES", 4 * 1024 * 1024)
RTA_GRPC_STREAM_WINDOW_BYTES = env_int("RTA_GRPC_STREAM_WINDOW_BYTES", 4 * 1024 * 1024)
RTA_GRPC_SERVICES = ["sessions_app.grpc.register", "config_app.grpc.register", "data_app.grpc.register"]

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


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


RTA_STREAM_TRIM_LENGTH = env_int("RTA_STREAM_TRIM_LENGTH", 10_000)  # entries kept per stream
RTA_STREAM_TRIM_INTERVAL = env_float("RTA_STREAM_TRIM_INTERVAL", 30.0)  # seconds between trims
RTA_STREAM_SESSION_TTL = env_float("RTA_STREAM_SESSION_TTL", 3_600.0)  # directory entry expiry (s)
RTA_STREAM_TIME_RANGE_INTERVAL = max(0.1, env_float("RTA_STREAM_TIME_RANGE_INTERVAL", 0.1))  # <= 10 Hz
# Session changes (JSON, time range) reach the directory at once after a quiet spell, then batched this
# far apart: rendering every live session's JSON for every update would cost more than the updates.
RTA_STREAM_SESSION_PUBLISH_INTERVAL = max(0.1, env_float("RTA_STREAM_SESSION_PUBLISH_INTERVAL", 1.0))
RTA_STREAM_BURST_BYTES = env_int("RTA_STREAM_BURST_BYTES", 64 * 1024)  # burst target before LZ4
RTA_STREAM_WRITER_LINGER_MS = env_float("RTA_STREAM_WRITER_LINGER_MS", 10.0)  # writer batching: at most ...
RTA_STREAM_WRITER_IDLE_MS = env_float("RTA_STREAM_WRITER_IDLE_MS", 1.0)  # ... or once the writer pauses
RTA_STREAM_WRITER_MAX_PENDING_BYTES = env_int("RTA_STREAM_WRITER_MAX_PENDING_BYTES", 64 * 1024 * 1024)
RTA_STREAM_BATCH_DELAY_MS = env_float("RTA_STREAM_BATCH_DELAY_MS", 5.0)  # WebSocket batching delay
RTA_STREAM_MAX_SENDS_PER_SECOND = env_int("RTA_STREAM_MAX_SENDS_PER_SECOND", 5000)  # stretches it with many clients
RTA_STREAM_CLIENT_MAX_BUFFER_BYTES = env_int("RTA_STREAM_CLIENT_MAX_BUFFER_BYTES", 16 * 1024 * 1024)
RTA_STREAM_LIVE_CHECK_INTERVAL = env_float("RTA_STREAM_LIVE_CHECK_INTERVAL", 1.0)  # writers re-read session state
# Longest a WebSocket may stay open, in seconds; -1 (default): as long as the session streams
# (a 24-hour race is followed from start to finish).
RTA_WEBSOCKET_MAX_SECONDS = env_int("RTA_WEBSOCKET_MAX_SECONDS", -1)
RTA_STREAM_TRIMMER = env_bool("RTA_STREAM_TRIMMER", True)  # `serve` runs the trimmer

# --- Advanced Streams ingest (issue 7) ---
# Seconds between flushes of ingested data; Kafka offsets are committed after each flush.
RTA_INGEST_FLUSH_SECONDS = float(os.environ.get("RTA_INGEST_FLUSH_SECONDS") or 2.0)
# Buffered (not yet flushed) ingest data that forces an early flush.
RTA_INGEST_FLUSH_BYTES = env_int("RTA_INGEST_FLUSH_BYTES", 256 * 1024 * 1024)
# Consumer group of manage.py ingest_streams when --group is not given.
RTA_INGEST_GROUP = os.environ.get("RTA_INGEST_GROUP") or "rta-ingest"
# Seconds before dependencies that were missing are looked up again.
RTA_INGEST_RETRY_SECONDS = float(os.environ.get("RTA_INGEST_RETRY_SECONDS") or 5.0)
# A stream silent this long no longer holds back the committed offset of its partition.
RTA_INGEST_IDLE_SECONDS = float(os.environ.get("RTA_INGEST_IDLE_SECONDS") or 300.0)
# Largest dependency document /api/dependencies accepts.
RTA_DEPENDENCY_MAX_BYTES = env_int("RTA_DEPENDENCY_MAX_BYTES", 32 * 1024 * 1024)
# Largest config PutConfig / PutConfigStream accept (a JSON config is also validated in memory).
RTA_CONFIG_MAX_BYTES = env_int("RTA_CONFIG_MAX_BYTES", 256 * 1024 * 1024)

# --- data store writes ---
# Bytes a write stream may buffer before it flushes in the foreground (half of it starts a background flush).
RTA_DATA_BUFFER_BYTES = env_int("RTA_DATA_BUFFER_BYTES", 32 * 1024 * 1024)
# Seconds buffered data may wait before it is flushed (checked as items arrive; 0 = off).
RTA_DATA_FLUSH_AGE = env_float("RTA_DATA_FLUSH_AGE", 10.0)
# LZ4 level for stored chunks: 0 fast (default), 1-12 high compression (smaller, slower writes).
RTA_DATA_LZ4_LEVEL = env_int("RTA_DATA_LZ4_LEVEL", 0)
