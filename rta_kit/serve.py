"""``python -m rta_kit.serve module:name [--host H] [--port N]``: serve a data adapter over HTTP.

``name`` is an adapter object, a ``DataServiceApp`` (or any ASGI application),
or a callable taking no arguments that returns one of those (a factory). The
server is uvicorn: it streams with flow control (a slow client holds the
adapter back instead of filling memory) and drops the connection when a
response fails after its first byte. In a script, call ``serve(adapter,
host, port)``.
"""

import argparse
import importlib
import inspect
import logging
import sys

from rta_kit.service import DataServiceApp

ADAPTER_METHODS = ("periodic_chunks", "timestamped_chunks", "row_chunks", "events")


def application(target):
    """The ASGI application for an adapter, an application, or a factory of either."""
    if isinstance(target, DataServiceApp):
        return target
    if any(hasattr(target, name) for name in ADAPTER_METHODS):
        return DataServiceApp(target)
    if callable(target) and _is_asgi(target):
        return target
    if callable(target):
        return application(target())
    raise TypeError(f"{target!r} is neither a data adapter, an ASGI application nor a factory of one")


def _is_asgi(target):
    try:
        parameters = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return False
    function = target if inspect.isfunction(target) or inspect.ismethod(target) else type(target).__call__
    return len(parameters) == 3 and inspect.iscoroutinefunction(function)


def load(spec):
    """``module:name`` -> the object (``name`` may be dotted)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"expected module:name, not {spec!r}")
    target = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def serve(target, host="127.0.0.1", port=8090, log_level="info", access_log=True):
    """Serve ``target`` (see ``application``) until interrupted (SIGINT/SIGTERM)."""
    import uvicorn

    uvicorn.run(
        application(target),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rta_kit.serve", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="module:name of an adapter, an ASGI application or a factory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, ".")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(load(args.target), args.host, args.port, args.log_level, not args.no_access_log)


if __name__ == "__main__":
    main()
