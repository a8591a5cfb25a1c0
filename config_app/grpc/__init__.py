"""gRPC adapters of the config app: the Config Service (``rta.toolkit.api.config_service.ConfigStore``)
and the Schema Mapping Service (``rta.toolkit.api.schema_mapping_service.SchemaMappingStore``).

Each ``register*`` function is listed in ``settings.RTA_GRPC_SERVICES``.
"""


def register(server):
    """Add the ConfigStore servicer to ``server``; returns the full service names it serves."""
    from config_app.grpc.servicer import register as _register

    return _register(server)


def register_schema_mappings(server):
    """Add the SchemaMappingStore servicer to ``server``; returns the full service names it serves."""
    from config_app.grpc.schema_mappings import register as _register

    return _register(server)
