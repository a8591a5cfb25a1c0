"""The config app's admin: configs and dependencies (``configs``), schema mappings (``schema_mappings``)."""

from config_app.admin import configs, schema_mappings  # noqa: F401  (registers the model admins)
