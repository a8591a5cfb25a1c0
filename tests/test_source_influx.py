"""The InfluxDB 1.x data source and ``manage.py index_influx``, against a real ``influxd``.

The test writes line protocol to an influxd it starts (``tests.influx_server``),
indexes a measurement's tag values, and reads through the session REST
endpoint, checking every sample against what it wrote: types, the periodic /
timestamped rule, stable chunk boundaries, compound filters, the mapping's
database / measurement over the defaults, events, injection attempts
refused, the exposed data service, and /health while influxd is down.
"""

from io import StringIO
from urllib.parse import quote

import numpy as np
import pytest
from django.core.management import call_command

from config_app.services import schema_mappings
from data_app.services import publish
from data_app.sources import registry
from rta_core.errors import NotFound
from sessions_app.models import DataBinding, Session
from sessions_app.services.updates import create_or_update_session
from tests.influx_server import InfluxServer
from tests.test_data_bindings import T0, S, binding, fetch, served
from tests.test_sources_series import PIT_EVENT

pytestmark = pytest.mark.django_db
MS = 1_000_000
SOURCE = "influx"
DATABASE, MEASUREMENT = "telemetry", "car"
CAR43, CAR44, ONEIL, CAR45 = "\"car\"='43'", "\"car\"='44'", "\"car\"='o\\'neil'", "\"car\"='45'"


def car_samples(seconds, base, seed):
    """``{field: (times, values)}``: 1 kHz float ``fast``, 10 Hz integer ``slow`` (a 2 s hole), 10 Hz boolean
    ``flag``, irregular float ``irr``."""
    rng = np.random.default_rng(seed)
    fast_t = base + np.arange(seconds * 1000, dtype=np.int64) * MS
    slow_t = base + np.arange(seconds * 10, dtype=np.int64) * 100 * MS
    keep = (slow_t < base + 5 * S) | (slow_t >= base + 7 * S)
    irr_t = base + np.unique(np.cumsum(rng.integers(1, 40, size=seconds * 40)) * MS)
    irr_t = irr_t[irr_t < base + seconds * S]
    return {
        "fast": (fast_t, np.round(np.sin(np.arange(len(fast_t)) / 50.0), 9) + 0.125),
        "slow": (slow_t[keep], (np.arange(len(slow_t)) * 7 - 300)[keep]),
        "flag": (slow_t, np.arange(len(slow_t)) % 3 == 0),
        "irr": (irr_t, np.round(rng.normal(size=len(irr_t)), 6)),
    }


def lines(tag, samples):
    """Line protocol, one line per time with the fields present then (and a string field never served)."""
    rows = {}
    for field, (times, values) in samples.items():
        for t, v in zip(times.tolist(), values.tolist()):
            if field == "slow":
                text = f"{v}i"
            elif field == "flag":
                text = "true" if v else "false"
            else:
                text = repr(float(v))
            rows.setdefault(t, []).append(f"{field}={text}")
    tag = tag.replace(" ", "\\ ").replace(",", "\\,").replace("=", "\\=")
    return [f'{MEASUREMENT},car={tag} {",".join(fields)},label="x y" {t}' for t, fields in sorted(rows.items())]


@pytest.fixture(scope="module")
def influx(tmp_path_factory):
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.query(f'CREATE DATABASE "{DATABASE}"')
    cars = {
        CAR43: car_samples(20, T0, 1),
        CAR44: {"fast": car_samples(3, T0 + 100 * S, 2)["fast"]},
        ONEIL: {"fast": car_samples(2, T0 + 200 * S, 3)["fast"]},
        CAR45: {"fast": (T0 + 300 * S + np.arange(1000, dtype=np.int64) * S, np.arange(1000) * 0.5)},  # 1 Hz
    }
    for identity, tag in ((CAR43, "43"), (CAR44, "44"), (ONEIL, "o'neil"), (CAR45, "45")):
        server.write(DATABASE, lines(tag, cars[identity]))
    events = [
        f'car_events,car=43 event="pit",status="in",lap=3i {T0 + 5 * S}',
        f'car_events,car=43 event="flag",status="yellow",lap=4i {T0 + 9 * S}',
        f'car_events,car=44 event="pit",status="in",lap=1i {T0 + 101 * S}',
    ]
    server.write(DATABASE, events)
    odd = [f'odd,car=1 we"ird={i * 0.25},a\\,b={i}i {T0 + i * S}' for i in range(10)]  # names to quote
    server.write(DATABASE, odd)
    server.cars = cars
    yield server
    server.close()


@pytest.fixture
def configured(influx, settings):
    settings.RTA_INFLUX_URL = influx.url
    settings.RTA_INFLUX_SOURCE = SOURCE
    settings.RTA_INFLUX_DATABASE = ""
    settings.RTA_INFLUX_MEASUREMENT = ""
    settings.RTA_INFLUX_MAX_FREQUENCY = 0.0
    yield influx
    registry.configured()


def index(**options):
    out = StringIO()
    call_command("index_influx", stdout=out, **{"measurement": MEASUREMENT, "database": DATABASE, **options})
    return out.getvalue()


def session_of(identity):
    return publish.session_identity(SOURCE, identity)


def expected(samples, field, channel, dtype, start=None, end=None):
    times, values = samples[field]
    return sorted(
        (channel, int(t), np.asarray([v], dtype=dtype).tobytes())
        for t, v in zip(times.tolist(), values.tolist())
        if (start is None or t >= start) and (end is None or t <= end)
    )


def of(samples, channel):
    return [s for s in samples if s[0] == channel]


def channels_of(identity):
    mapping = schema_mappings.get_schema_mapping(SOURCE, identity)
    return {f["source_field"]: (f["target_channel"], f["target_channel_data_type"]) for f in mapping["field_mappings"]}


# --- serving ---------------------------------------------------------------------------------


def test_tag_values_are_indexed_and_serve_every_sample(api, configured, monkeypatch):
    from data_app.sources import influx, influx_msgpack

    monkeypatch.setattr(influx, "CHUNK_ROWS", 1000)  # many chunks of the answer ...
    monkeypatch.setattr(influx, "PIECE_BYTES", 999)  # ... arriving in pieces that split rows and headers ...
    monkeypatch.setattr(influx_msgpack, "HEAD_BYTES", 7)  # ... whose headers are read in growing windows
    index(tag="car")
    cars = configured.cars[CAR43]
    channels = channels_of(CAR43)
    assert set(channels) == {"fast", "slow", "flag", "irr"}, "string fields are not served"
    assert channels["flag"][1] == "UINT8" and channels["slow"][1] == "DOUBLE64"
    session = session_of(CAR43)
    samples = served("timestamped", fetch(api, session, "timestamped", "0-3"))
    for field, dtype in (("fast", "<f8"), ("slow", "<f8"), ("flag", "<u1"), ("irr", "<f8")):
        assert of(samples, channels[field][0]) == expected(cars, field, channels[field][0], dtype), field
    periodic = served("periodic", fetch(api, session, "periodic", "0-3"))
    assert of(periodic, channels["fast"][0]) == expected(cars, "fast", channels["fast"][0], "<f8")
    assert of(periodic, channels["slow"][0]) == expected(cars, "slow", channels["slow"][0], "<f8"), "with a hole"
    assert of(periodic, channels["irr"][0]) == [], "an irregular field serves no periodic data"
    record = Session.objects.get(identity=session)
    assert (record.start_time, record.end_time) == (T0, T0 + 20 * S - MS)
    mapping = schema_mappings.get_schema_mapping(SOURCE, CAR43)
    assert mapping["properties"] == {
        "dialect": "influxql",
        "database": DATABASE,
        "retention_policy": "autogen",
        "measurement": MEASUREMENT,
    }
    oneil = served("timestamped", fetch(api, session_of(ONEIL), "timestamped", "0-3"))
    assert oneil == expected(configured.cars[ONEIL], "fast", channels_of(ONEIL)["fast"][0], "<f8")


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_chunk_boundaries_do_not_depend_on_the_request(api, configured, kind):
    index(tag="car")
    session = session_of(CAR43)
    whole = {(c.start, c.end, tuple(c.channel_ids)) for c in fetch(api, session, kind, "0-3")}
    start, end = T0 + 3_456 * MS + 11, T0 + 12_345 * MS + 7
    part = fetch(api, session, kind, "0-3", start=start, end=end)
    assert part
    for chunk in part:
        assert (chunk.start, chunk.end, tuple(chunk.channel_ids)) in whole
        assert chunk.end >= start and chunk.start <= end


def test_reindexing_updates_and_never_duplicates(configured):
    index(tag="car")
    index(tag="car")
    sessions = [session_of(i) for i in (CAR43, CAR44, ONEIL, CAR45)]
    assert Session.objects.filter(identity__in=sessions).count() == 4
    assert DataBinding.objects.filter(session__identity__in=sessions).count() == 4


def test_long_reads_query_the_next_slices_ahead_and_serve_every_sample(api, configured, monkeypatch):
    import threading

    from data_app.sources import influx, series

    monkeypatch.setattr(series, "SLICE_SAMPLES", 16)  # slices of one 100 s window: ten for this series
    index(tag="car")
    threads = []
    real = influx.InfluxSource.read

    def noting(self, *args):
        threads.append(threading.current_thread().name)
        return real(self, *args)

    monkeypatch.setattr(influx.InfluxSource, "read", noting)
    session, cars = session_of(CAR45), configured.cars[CAR45]
    for kind in ("periodic", "timestamped"):
        assert served(kind, fetch(api, session, kind, "0")) == expected(cars, "fast", 0, "<f8"), kind
        start, end = T0 + 555 * S + 3, T0 + 1_111 * S + 5
        part = served(kind, fetch(api, session, kind, "0", start=start, end=end))
        assert part == expected(cars, "fast", 0, "<f8", start=T0 + 500 * S, end=T0 + 1_199 * S), "100 s chunks"
    assert sum(name.startswith("source-read") for name in threads) >= 20, "slices after the first read ahead"


def test_a_compound_filter_and_the_defaults_from_settings(api, configured, settings):
    settings.RTA_INFLUX_DATABASE, settings.RTA_INFLUX_MEASUREMENT = DATABASE, MEASUREMENT
    identity = "car='43' OR car='44'"
    create_or_update_session("both", [("set_data_bindings", [{**binding(identity), "source": SOURCE}])])
    samples = served("timestamped", fetch(api, "both", "timestamped", "0-3"))
    fast = [s for s in samples if s[0] == 0]  # no mapping: fields in InfluxDB's order, fast first
    assert fast == sorted(
        expected(configured.cars[CAR43], "fast", 0, "<f8") + expected(configured.cars[CAR44], "fast", 0, "<f8")
    )
    schema_mappings.put_schema_mapping(
        SOURCE,
        identity,
        {
            "properties": {"database": DATABASE, "measurement": "car_events"},
            "field_mappings": [{"source_field": "lap", "target_channel": 5}],
        },
    )
    laps = served("timestamped", fetch(api, "both", "timestamped", "5"))
    assert [(t, np.frombuffer(v, "<f8")[0]) for _, t, v in laps] == [
        (T0 + 5 * S, 3),
        (T0 + 9 * S, 4),
        (T0 + 101 * S, 1),
    ]


def test_field_names_are_quoted_identifiers(api, configured):
    index(tag="car", measurement="odd")
    identity = "\"car\"='1'"
    channels = channels_of(identity)
    assert set(channels) == {'we"ird', "a,b"}
    samples = served("timestamped", fetch(api, session_of(identity), "timestamped", "0-1"))
    weird, ab = channels['we"ird'][0], channels["a,b"][0]
    assert of(samples, weird) == [(weird, T0 + i * S, np.float64(i * 0.25).tobytes()) for i in range(10)]
    assert of(samples, ab) == [(ab, T0 + i * S, np.float64(i).tobytes()) for i in range(10)]


def test_events_come_from_the_events_measurement_of_the_mapping(api, configured):
    index(tag="car")
    mapping = schema_mappings.get_schema_mapping(SOURCE, CAR43)
    mapping["properties"]["events_measurement"] = "car_events"
    mapping["event_mappings"] = [PIT_EVENT]
    schema_mappings.put_schema_mapping(SOURCE, CAR43, mapping)
    events = served("events", fetch(api, session_of(CAR43), "events"))
    assert [(t, e) for _, t, e in events] == [(T0 + 5 * S, (0x10, "in", (3.0,)))]
    for bounds in ({"start": 10**23}, {"end": -(10**23)}, {"start": -(10**23), "end": 10**23}):
        expected = [] if len(bounds) == 1 else events  # beyond any data time: no data, never a 5xx
        assert served("events", fetch(api, session_of(CAR43), "events", **bounds)) == expected


def test_max_frequency_sets_the_grid_of_irregular_fields(api, configured, settings):
    settings.RTA_INFLUX_MAX_FREQUENCY = 1000.0  # 1 ms: 1 s windows
    index(tag="car")
    channel = channels_of(CAR43)["irr"][0]
    chunks = fetch(api, session_of(CAR43), "timestamped", str(channel))
    seconds = {int(t) // S for t in configured.cars[CAR43]["irr"][0]}
    assert len(chunks) == len(seconds) and all(c.start // S == c.end // S for c in chunks)
    settings.RTA_INFLUX_MAX_FREQUENCY = 0.0
    chunks = fetch(api, session_of(CAR43), "timestamped", str(channel))
    assert len(chunks) < len(seconds), "without the hint the typical gap sets the grid"


# --- refusing ----------------------------------------------------------------------------------

INJECTIONS = [
    "car='43'); DROP DATABASE \"telemetry\"; SELECT * FROM \"car\" WHERE (car='43'",
    "car='43') OR (car='44'",
    "car='43'; DROP DATABASE \"telemetry\"",
    "car='43' -- AND time < 0",
    "car='43' /* comment */",
    "car='43' OR car=/4/",
    "car='43",
    "(car='43'",
    "",
]


def test_a_filter_may_hold_anything_inside_literals_and_regular_expressions():
    from data_app.sources.influx_query import checked_filter

    for identity in ("car='a;b'", "car='x'' -- '", "\"we(ird\"='1'", "car=~/^4[34]$/", "(a='1' OR (b='2'))"):
        assert checked_filter(identity) == f"({identity})"
    for identity in INJECTIONS:
        with pytest.raises(NotFound):
            checked_filter(identity)


def test_a_regular_expression_filter_selects_several_series(api, configured, settings):
    settings.RTA_INFLUX_DATABASE, settings.RTA_INFLUX_MEASUREMENT = DATABASE, MEASUREMENT
    identity = "car =~ /^4[34]$/"
    create_or_update_session("regex", [("set_data_bindings", [{**binding(identity), "source": SOURCE}])])
    fast = [s for s in served("timestamped", fetch(api, "regex", "timestamped", "0")) if s[0] == 0]
    cars = configured.cars
    assert fast == sorted(expected(cars[CAR43], "fast", 0, "<f8") + expected(cars[CAR44], "fast", 0, "<f8"))


def test_injection_attempts_are_no_data_and_change_nothing(api, configured):
    index(tag="car")
    mapping = schema_mappings.get_schema_mapping(SOURCE, CAR43)
    for i, identity in enumerate(INJECTIONS[:-1]):
        schema_mappings.put_schema_mapping(SOURCE, identity, mapping)
        create_or_update_session(f"inj-{i}", [("set_data_bindings", [{**binding(identity), "source": SOURCE}])])
        assert fetch(api, f"inj-{i}", "timestamped", "0-") == [], identity
    for identity in INJECTIONS:
        with pytest.raises(Exception) as refused:
            list(registry.configured()[SOURCE].prepare(identity).chunks("timestamped"))
        assert getattr(refused.value, "http_status", 500) == 404, identity
    databases = configured.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
    assert [DATABASE] in databases


def test_the_exposed_data_service_serves_and_refuses(api, configured, settings):
    index(tag="car")
    settings.RTA_EXPOSE_DATA_SERVICE = True
    assert api.get(f"/rta/v2/sources/{SOURCE}/").status_code == 200
    channel = channels_of(CAR44)["fast"][0]
    url = f"/rta/v2/sources/{SOURCE}/rta/v2/data/{quote(CAR44, safe='')}/timestamped/{channel}"
    response = api.get(url)
    assert response.status_code == 200
    from rta_kit import wire

    samples = served("timestamped", wire.read_chunks(b"".join(response.streaming_content)))
    assert samples == expected(configured.cars[CAR44], "fast", channel, "<f8")
    bad = api.get(f"/rta/v2/sources/{SOURCE}/rta/v2/data/{quote(INJECTIONS[0], safe='')}/timestamped/0")
    assert bad.status_code == 404 and "DROP" not in bad.content.decode()


def test_health_shows_influx_down_while_influxd_is_stopped(api, configured):
    assert api.get("/health").status_code == 200
    configured.stop()
    try:
        response = api.get("/health")
        text = response.content.decode()
        assert response.status_code == 503 and f"data source {SOURCE}" in text
        assert str(configured.http_port) not in text and "127.0.0.1" not in text
    finally:
        configured.start()
    assert api.get("/health").status_code == 200


@pytest.mark.parametrize("url", ["ftp://influx.example:8086", "http://user:s3cret@influx.example:0", "http://"])
def test_a_malformed_influx_url_stops_the_start_without_its_credentials(url, tmp_path):
    from tests.test_settings_strict import check

    result = check({"RTA_INFLUX_URL": url}, tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "RTA_INFLUX_URL" in line and "http(s)://host" in line and "s3cret" not in line
