"""Build and import the project's protobuf modules.

The ``.proto`` files live in ``protos/`` with their package paths
(``protos/rta/model/data.proto`` ...). Python modules are generated next to
them by grpcio-tools, so ``protos/`` goes on ``sys.path`` and the generated
code imports itself as ``rta.model.data_pb2`` and so on. ``make protos`` runs
the build; importing settings also rebuilds when a module is missing or older
than its ``.proto``, so ``manage.py`` works straight from a clean checkout.
"""

import sys
import threading
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"
_lock = threading.Lock()


def proto_files():
    return sorted(PROTO_ROOT.rglob("*.proto"))


def _outputs(proto):
    stem = proto.with_suffix("")
    yield stem.parent / f"{stem.name}_pb2.py"
    yield stem.parent / f"{stem.name}_pb2_grpc.py"


def stale_protos():
    """The .proto files whose generated modules are missing or out of date."""
    stale = []
    for proto in proto_files():
        mtime = proto.stat().st_mtime
        if any(not out.exists() or out.stat().st_mtime < mtime for out in _outputs(proto)):
            stale.append(proto)
    return stale


def build(force=False):
    """Compile every .proto under protos/ (only stale ones unless ``force``)."""
    protos = proto_files() if force else stale_protos()
    if not protos:
        return []
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).resolve().parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={PROTO_ROOT}",
        f"--pyi_out={PROTO_ROOT}",
        f"--grpc_python_out={PROTO_ROOT}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {', '.join(p.name for p in protos)}")
    for folder in {p.parent for p in protos}:
        # Namespace packages would also work; explicit ones keep tools like mypy happy.
        node = folder
        while node != PROTO_ROOT:
            (node / "__init__.py").touch(exist_ok=True)
            node = node.parent
    return protos


def ensure_importable():
    with _lock:
        if str(PROTO_ROOT) not in sys.path:
            sys.path.insert(0, str(PROTO_ROOT))
        if stale_protos():
            build()
