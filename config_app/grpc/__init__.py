"""gRPC adapter of the Config Service (``rta.toolkit.api.config_service.ConfigStore``).

``register`` is listed in ``settings.RTA_GRPC_SERVICES`` as ``config_app.grpc.register``.
"""


def register(server):
    """Add the ConfigStore servicer to ``server``; returns the full service names it serves."""
    from config_app.grpc.servicer import register as _register

    return _register(server)
