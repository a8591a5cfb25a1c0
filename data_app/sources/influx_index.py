"""What ``manage.py index_influx`` publishes: a measurement's tag values as identities, and what each holds.

Each value of the tag is one identity, the filter ``"TAG"='value'``. It is
described from InfluxDB: the measurement's numeric fields (float and integer
as f64, boolean as u8), the time range of the rows the filter selects, and
each field's interval (regular when every gap at its start is a whole
multiple of the most common one). The mapping's properties name the
database, retention policy and measurement, so the data stays readable
whatever the server's defaults.
"""

from data_app.sources import influx_query as q
from data_app.sources.indexed import IndexedData, IndexedField
from data_app.sources.mappings import Mapping
from data_app.sources.series import present_samples, regular_interval

PROBE_ROWS = 2000  # samples of a field's start its interval is detected from
TYPES = {"float": "f64", "integer": "f64", "boolean": "u8"}


def identities(source, target, tag):
    """``{identity: value}``: the filter ``"TAG"='value'`` of each value of ``tag`` in the measurement, sorted."""
    statement = f"SHOW TAG VALUES FROM {target.source} WITH KEY = {q.identifier(tag)}"
    values = set()
    for result in source.json(target.database, statement):
        for series in result.get("series", []):
            values.update(str(value) for _, value in series["values"])
    return {f"{q.identifier(tag)}={q.literal(value)}": value for value in sorted(values)}


def describe(source, target, identity, tag_details=None):
    """The ``IndexedData`` of ``identity`` (a filter) in ``target``, or None when it selects no row."""
    properties = {
        "dialect": "influxql",
        "database": target.database,
        "retention_policy": target.retention_policy,
        "measurement": target.measurement,
    }
    mapping = Mapping(properties, (), (), False)
    types = source.field_types(source.target(mapping))
    extent = source.time_range(identity, mapping, source.target(mapping))
    if extent is None or not types:
        return None
    where = q.checked_filter(identity)
    fields = []
    for name, kind in types.items():
        statement = q.select([name], target.source, where, extent[0], extent[1], f" LIMIT {PROBE_ROWS}")
        times, columns = source.samples(target.database, statement, {name: kind})
        values = columns.get(name)
        if values is None or not len(times):
            continue  # no sample of this field for this identity
        times = present_samples(times, values)[0]
        fields.append(IndexedField(name, TYPES[kind], regular_interval(times), source_type=kind))
    details = {"Measurement": target.measurement, **(tag_details or {})}
    return IndexedData(fields=fields, start=extent[0], end=extent[1], details=details, properties=properties)
