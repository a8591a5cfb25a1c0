"""Built-in data sources: stores the gateway reads in place, in-process (spec §13, §14).

A *source* serves the data identities of one data source name (``sqlite``,
``parquet``, a PostgreSQL table, InfluxDB ...) the way a data adapter does,
without an HTTP hop: the gateway routes a binding whose ``source`` names one
to it (``registry.configured``), and ``RTA_EXPOSE_DATA_SERVICE`` serves it to
other gateways at ``/rta/v2/sources/{source}/rta/v2/data/...``.

Most stores hold *series*: fields sampled at times. ``series.SeriesSource``
turns a store that can list its fields and read columns between two times
into chunks on stable grids, by the common rules (``series``), so an
adapter only says how to find and read its data. Each reads the schema
mapping of its (source, identity) (``mappings``) for which field is which
channel, its sample type and adapter-specific properties.
"""
