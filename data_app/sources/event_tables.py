"""Events a store keeps beside its samples: rows of a table (or measurement) as the series base's event rows.

A mapping property names where (``events_table`` for the SQLite and SQL
sources, ``events_measurement`` for InfluxDB); the rows are read with the
same identity as the samples. In each row the ``event_field`` column (mapping
property, default ``event``) names the event, ``status_field`` (default
``status``) is its status text and every other numeric column is its data;
event mappings then apply as for every source (``series.Prepared._events``).
"""

from decimal import Decimal

EVENT_FIELD, STATUS_FIELD = "event", "status"


def name_fields(mapping):
    """``(event_field, status_field)`` of a mapping."""
    return mapping.property("event_field", EVENT_FIELD), mapping.property("status_field", STATUS_FIELD)


def event_row(when, row, name_field, status_field, skip=()):
    """``(time ns, event name, status, {column: value})`` of one ``row`` (a dict), None without an event name.

    ``skip``: columns that are no data (time, key).
    """
    name = row.get(name_field)
    if name is None:
        return None
    status = row.get(status_field)
    left_out = {name_field, status_field, *skip}
    data = {k: float(v) for k, v in row.items() if k not in left_out and isinstance(v, (int, float, Decimal))}
    return int(when), str(name), "" if status is None else str(status), data
