"""InfluxDB 1.x served in place (``RTA_INFLUX_URL``, source ``RTA_INFLUX_SOURCE``, default ``influx``).

The toolkit's Influx data adapter contract (spec §14): the identity is a
trusted InfluxQL filter expression (``car='43'``, ``"car"='43' OR "car"='44'``)
put in brackets into the query; the schema mapping's ``database``,
``retention_policy`` and ``measurement`` properties (defaults
``RTA_INFLUX_DATABASE``, ``RTA_INFLUX_RETENTION_POLICY`` = ``autogen``,
``RTA_INFLUX_MEASUREMENT``) say what is read::

    SELECT "f1","f2" FROM "db"."rp"."meas" WHERE (identity) AND time >= ..ns AND time <= ..ns

Every numeric field (float, integer, boolean) of the measurement is a store
field; the fields of one rate are read by one query per slice (over the
HTTP ``/query`` API, MessagePack, chunked, ``epoch=ns``: InfluxDB 1.4+). ``RTA_INFLUX_MAX_FREQUENCY`` (Hz) sets the chunk grid
of irregular fields (stable whatever the data's start). Events: a mapping
with an ``events_measurement`` property reads events from that measurement
(same identity filter): the ``event_field`` (default ``event``) names the
event, ``status_field`` (default ``status``) its status, other numeric fields
its data.
"""

import contextlib
import dataclasses
import threading
import time

import httpx
import numpy as np

from data_app.sources import event_tables
from data_app.sources import influx_query as q
from data_app.sources.influx_msgpack import read_msgpack
from data_app.sources.series import SeriesSource, StoreField
from rta_core.errors import NotFound

SETTINGS = (
    "RTA_INFLUX_URL",
    "RTA_INFLUX_SOURCE",
    "RTA_INFLUX_DATABASE",
    "RTA_INFLUX_RETENTION_POLICY",
    "RTA_INFLUX_MEASUREMENT",
    "RTA_INFLUX_MAX_FREQUENCY",
    "RTA_INFLUX_USERNAME",
    "RTA_INFLUX_PASSWORD",
)
CONNECT_SECONDS = 10.0
READ_SECONDS = 300.0  # a slice of a fast measurement can take a while to come
HEALTH_SECONDS = 2.0
CHUNK_ROWS = 10_000  # rows per chunk of a chunked answer (InfluxDB 1.6 spent ~10 % less CPU than with 100,000)
PIECE_BYTES = 1 << 20  # bytes of an answer taken from the connection at a time
FIELD_TYPES_SECONDS = 30.0  # how long a measurement's field list is trusted
RESERVED = {"time"}  # the answer's own first column


def from_settings(settings):
    url = getattr(settings, "RTA_INFLUX_URL", "")
    if not url:
        return []
    username, password = getattr(settings, "RTA_INFLUX_USERNAME", ""), getattr(settings, "RTA_INFLUX_PASSWORD", "")
    return [
        InfluxSource(
            getattr(settings, "RTA_INFLUX_SOURCE", "") or "influx",
            url,
            Target(
                getattr(settings, "RTA_INFLUX_DATABASE", ""),
                getattr(settings, "RTA_INFLUX_RETENTION_POLICY", "") or "autogen",
                getattr(settings, "RTA_INFLUX_MEASUREMENT", ""),
            ),
            getattr(settings, "RTA_INFLUX_MAX_FREQUENCY", 0.0) or 0.0,
            (username, password) if username else None,
            getattr(settings, "RTA_DATA_SERVICE_HEALTH_TIMEOUT", HEALTH_SECONDS),
        )
    ]


@dataclasses.dataclass(frozen=True)
class Target:
    """What a mapping reads: database, retention policy, measurement."""

    database: str
    retention_policy: str
    measurement: str

    @property
    def source(self):
        return q.source_of(self.database, self.retention_policy, self.measurement)


class InfluxDown(Exception):
    """InfluxDB failed or could not be reached (the message names neither the URL nor the query)."""


class InfluxSource(SeriesSource):
    reads_by_rate = True  # a query answers rows: slower fields read with faster ones only add holes

    def __init__(self, name, url, defaults, max_frequency=0.0, auth=None, health_seconds=HEALTH_SECONDS):
        self.name, self.defaults, self.health_seconds = name, defaults, health_seconds
        self.max_frequency = max_frequency
        self.client = httpx.Client(
            base_url=url,
            auth=auth,
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
            trust_env=False,
            headers={"Accept-Encoding": "identity"},  # binary over a fast link: compressing costs more than it saves
        )
        self._types, self._types_lock = {}, threading.Lock()

    @property
    def irregular_interval(self):
        """``RTA_INFLUX_MAX_FREQUENCY`` as the interval irregular fields are cut by (None: unset)."""
        return max(1, round(1e9 / self.max_frequency)) if self.max_frequency else None

    # --- the series contract ---

    def target(self, mapping):
        """The ``Target`` of a mapping (its properties over the defaults); NotFound when incomplete."""
        d = self.defaults
        target = Target(
            mapping.property("database", d.database),
            mapping.property("retention_policy", d.retention_policy) or "autogen",
            mapping.property("measurement", d.measurement),
        )
        if not (target.database and target.measurement):
            raise NotFound("no InfluxDB database and measurement are configured for this data")
        return target

    def store_fields(self, identity, mapping):
        q.checked_filter(identity)
        target = self.target(mapping)
        return [StoreField(name, target) for name in self.field_types(target)]

    def time_range(self, identity, mapping, group):
        where, names = q.checked_filter(identity), list(self.field_types(group))
        if not names:
            return None
        first = q.select(names, group.source, where, q.MIN_TIME, q.MAX_TIME, " ORDER BY time ASC LIMIT 1")
        last = q.select(names, group.source, where, q.MIN_TIME, q.MAX_TIME, " ORDER BY time DESC LIMIT 1")
        times = [_first_time(result) for result in self.json(group.database, f"{first}; {last}")]
        if len(times) != 2 or None in times:
            return None
        return times[0], times[1]

    def read(self, identity, mapping, group, names, low, high):
        where, types = q.checked_filter(identity), self.field_types(group)
        names = [n for n in names if n in types]
        if not names:
            return np.empty(0, np.int64), {}
        wanted = {n: types[n] for n in names}
        return self.samples(group.database, q.select(names, group.source, where, low, high), wanted)

    def event_rows(self, identity, mapping, start, end):
        measurement = mapping.property("events_measurement")
        if not measurement:
            return []
        where, target = q.checked_filter(identity), self.target(mapping)
        events = Target(target.database, target.retention_policy, measurement)
        name_field, status_field = event_tables.name_fields(mapping)
        low = q.MIN_TIME if start is None else start
        high = q.MAX_TIME if end is None else end
        statement = f"SELECT * FROM {events.source} WHERE {where} AND time >= {max(low, q.MIN_TIME)}"
        statement += f" AND time <= {min(high, q.MAX_TIME)}"
        rows = []
        for result in self.json(target.database, statement):
            for series in result.get("series", []):
                columns = series["columns"]
                for values in series["values"]:
                    row = dict(zip(columns, values))
                    found = event_tables.event_row(row["time"], row, name_field, status_field, skip=("time",))
                    if found is not None:
                        rows.append(found)
        return rows

    def check(self):
        try:
            response = self.client.get("/ping", timeout=self.health_seconds)
        except httpx.TimeoutException:
            raise InfluxDown(f"InfluxDB did not answer within {self.health_seconds:g} s") from None
        except httpx.HTTPError:
            raise InfluxDown("InfluxDB is unreachable") from None
        if response.status_code != 204:
            raise InfluxDown(f"InfluxDB answered its ping with HTTP {response.status_code}")

    def close(self):
        self.client.close()

    # --- queries ---

    def field_types(self, target):
        """``{field: type}`` of the numeric fields of a measurement (``SHOW FIELD KEYS``), cached briefly."""
        now = time.monotonic()
        with self._types_lock:
            known = self._types.get(target)
            if known is not None and now - known[0] < FIELD_TYPES_SECONDS:
                return known[1]
        types = {}
        for result in self.json(target.database, f"SHOW FIELD KEYS FROM {target.source}"):
            for series in result.get("series", []):
                for name, kind in series["values"]:
                    if kind in q.NUMERIC_TYPES and name not in RESERVED and name not in types:
                        types[name] = kind
        with self._types_lock:
            self._types[target] = (now, types)
        return types

    def json(self, database, statement):
        """The ``results`` of a query (JSON); NotFound for no such database (...), InfluxDown for other errors."""
        response = self._get(database, statement, "application/json", chunked=False)
        try:
            results = response.json()["results"]
        except (ValueError, KeyError, TypeError):
            raise InfluxDown("InfluxDB answered a query with something else than results") from None
        errors = [str(r["error"]) for r in results if "error" in r]
        if errors:
            if all("not found" in e for e in errors):  # no such database, retention policy ...
                raise NotFound("no such data in this source")
            raise InfluxDown("InfluxDB answered a query with an error")  # its text echoes the query: not shown
        return results

    def samples(self, database, statement, types):
        """``(times, {field: values})`` of a SELECT, read as chunked MessagePack and decoded as it arrives."""
        with self._query(database, statement, "application/x-msgpack", chunked=True) as response:
            if not response.headers.get("content-type", "").startswith("application/x-msgpack"):
                raise InfluxDown("InfluxDB answered without MessagePack (InfluxDB 1.4 or later is needed)")
            try:
                return read_msgpack(response.iter_bytes(PIECE_BYTES), types)
            except q.QueryFailed:
                raise InfluxDown("InfluxDB answered a query with an error") from None
            except httpx.HTTPError:
                raise InfluxDown("InfluxDB failed while answering") from None

    def _get(self, database, statement, accept, chunked):
        with self._query(database, statement, accept, chunked) as response:
            try:
                response.read()
            except httpx.HTTPError:
                raise InfluxDown("InfluxDB failed while answering") from None
            return response

    @contextlib.contextmanager
    def _query(self, database, statement, accept, chunked):
        """The streamed answer of ``GET /query`` once its status is 200 (errors name no URL, no query)."""
        params = {"db": database, "q": statement, "epoch": "ns"}
        if chunked:
            params.update(chunked="true", chunk_size=str(CHUNK_ROWS))
        try:
            with self.client.stream("GET", "/query", params=params, headers={"Accept": accept}) as response:
                if response.status_code == 400:
                    raise NotFound("no such data in this source")  # a filter InfluxDB cannot parse (never echoed)
                if response.status_code in (401, 403):
                    raise InfluxDown("InfluxDB refused the credentials")
                if response.status_code != 200:
                    raise InfluxDown(f"InfluxDB answered HTTP {response.status_code}")
                yield response
        except httpx.TimeoutException:
            raise InfluxDown("InfluxDB did not answer in time") from None
        except httpx.HTTPError:
            raise InfluxDown("InfluxDB is unreachable") from None


def _first_time(result):
    for series in result.get("series", []):
        for values in series.get("values", []):
            return int(values[0])
    return None
