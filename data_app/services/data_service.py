"""The data-service interface (spec §13): a data identity's stored chunks, for a gateway to compose sessions from.

``GET /rta/v2/data/{dataIdentity}/...`` (``data_app.api``) serves this when
``RTA_EXPOSE_DATA_SERVICE`` is on: the fast path (stored chunk bytes behind a
fresh header, never decoded), bounds in data time, no data binding applied.
A built-in source (``data_app.sources``) is served the same way under
``/rta/v2/sources/{source}/`` (``read_data_identity(..., source=)``), so another gateway
lists it in its ``RTA_DATA_SERVICES`` with that base URL.
"""

from data_app.services.source_read import SourceStream
from data_app.sources import registry
from data_app.store import reader
from rta_core.access import Access
from rta_core.errors import NotFound, excerpt
from rta_core.identities import validate_identity
from sessions_app.services import scope


def read_data_identity(identity, kind, channels=None, start=None, end=None, access=Access.ANONYMOUS_FULL, source=None):
    """``identity``'s ``kind`` chunks: as stored (a ``reader.ChunkStream``), or as the built-in source
    ``source`` serves them (a ``SourceStream``; NotFound when there is no such source). InvalidArgument for
    an identity no data can have; an identity without data is served empty.

    A folder-restricted caller reads only identities a session in its folders has or binds, as DataReader
    (``scope.check_data_read``): the interface must not be a way around folder scoping.
    """
    built_in = None
    if source is not None:
        built_in = registry.configured().get(source)
        if built_in is None:
            raise NotFound(f"no built-in data source {excerpt(source)}")
    reader.check_request(kind, start, end)  # a known kind, start not after end
    validate_identity(identity, "data identity")
    scope.check_data_read(access, identity)
    if built_in is None:
        return reader.open_identity(identity, kind, channels, start, end)
    return SourceStream(source, built_in.prepare(identity), kind, channels, start, end)


def source_exists(source):
    return source in registry.configured()
