"""gRPC adapters of the Session Service (SessionStore).

``register`` is listed in ``settings.RTA_GRPC_SERVICES``; ``rta_site.grpc_server``
calls it with the one server every app shares.
"""


def register(server):
    """Add the SessionStore servicer to ``server``; returns the full service names."""
    from sessions_app.grpc.servicer import register as _register

    return _register(server)
