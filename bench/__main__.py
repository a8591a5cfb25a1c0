"""``python -m bench [module ...] [options]``: run the benchmark modules in turn.

Module names come first. With none, every known benchmark that exists is run;
options (e.g. ``--reseed``) are passed on to each module's ``main()`` through ``sys.argv``
(modules ignore options they do not know).
"""

import importlib
import importlib.util
import sys
import time

# Run first, in this order, when present; any other benchmark module in bench/ follows by name.
PREFERRED = ("sessions_rest", "grpc_sessions", "auth")
HELPERS = {"common"}


def discover():
    """Benchmark modules in bench/: every module but helpers and _private ones."""
    import pkgutil

    import bench

    found = {m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")} - HELPERS
    return [n for n in PREFERRED if n in found] + sorted(found - set(PREFERRED))


def _usage():
    print(__doc__.strip())
    print("\nbenchmarks: " + ", ".join(discover()))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv) and not any(not a.startswith("-") for a in argv):
        _usage()
        return 0
    # Module names come first; everything from the first option on is passed on.
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:split], argv[split:]
    if not names:
        names = discover()
    failures = []
    for name in names:
        if not _is_module(name):
            print(f"bench: no benchmark module bench/{name}.py", file=sys.stderr)
            failures.append(name)
            continue
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if entry is None:
            print(f"bench: bench/{name}.py has no main()", file=sys.stderr)
            failures.append(name)
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.perf_counter()
        saved = sys.argv
        sys.argv = [f"bench {name}", *options]
        try:
            code = entry()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = saved
        print(f"=== bench.{name} finished in {time.perf_counter() - started:.1f} s ===", flush=True)
        if code not in (None, 0):
            failures.append(name)
    if failures:
        print(f"bench: failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _is_module(name):
    if name.startswith("_") or name in HELPERS or not name.isidentifier():
        return False
    return importlib.util.find_spec(f"bench.{name}") is not None


if __name__ == "__main__":
    sys.exit(main())
