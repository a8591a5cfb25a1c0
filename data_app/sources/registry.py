"""The built-in sources this process serves, from settings (``RTA_SQLITE_ROOT``, ``RTA_SQL_SOURCES`` ...).

Each source module has ``from_settings(settings)``: the sources its settings
enable (none when unset). They are built once per settings value (tests
change settings), and closed when replaced.
"""

import importlib
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# data_app.sources.<module>, each with from_settings(settings) -> [source]
MODULES = ("parquet", "sqlite", "sql", "influx")
_lock = threading.Lock()
_built = {"key": None, "sources": {}}


def _key():
    return tuple(repr(getattr(settings, name, None)) for name in _setting_names())


def _setting_names():
    names = ["RTA_DATA_SERVICES"]
    for module in MODULES:
        names += getattr(_module(module), "SETTINGS", ())
    return names


def _module(name):
    return importlib.import_module(f"data_app.sources.{name}")


def configured():
    """``{source name: source}`` of every enabled built-in source."""
    key = _key()
    with _lock:
        if _built["key"] == key:
            return _built["sources"]
        sources = {}
        for module in MODULES:
            for source in _module(module).from_settings(settings):
                if source.name in sources:
                    raise ImproperlyConfigured(f"data source {source.name!r} is configured twice")
                sources[source.name] = source
        clash = sorted(set(sources) & set(settings.RTA_DATA_SERVICES))
        if clash:
            raise ImproperlyConfigured(f"data source {clash[0]!r} is both built in and listed in RTA_DATA_SERVICES")
        for old in _built["sources"].values():
            old.close()
        _built["key"], _built["sources"] = key, sources
        return sources


def checks():
    """``(name, check)`` of every built-in source's store, for /health: all run at once (a timeout each, not
    a sum), each ``check`` gives its own outcome."""
    sources = configured()
    if not sources:
        return
    with ThreadPoolExecutor(max_workers=min(len(sources), 8)) as pool:
        outcomes = {name: pool.submit(source.check) for name, source in sources.items()}
    for name, outcome in outcomes.items():
        yield f"data source {name}", outcome.result
