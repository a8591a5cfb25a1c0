"""The Config Service's behaviour: ``store`` (publish, read, delete), ``validation``
(config JSON rules), ``bindings`` (sessions bound to a config) and ``outline``
(a config as people read it)."""
