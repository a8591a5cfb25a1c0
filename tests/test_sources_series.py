"""Built-in data sources (``data_app.sources``): the common rules, gateway routing, exposure, health, publishing.

A small in-memory series store stands in for a real one here (it is the
store under test's *shape*, not a stand-in for a service): the rules are the
base class's, checked sample by sample through the REST endpoints. Each real
store has its own tests (``test_source_*.py``).
"""

import numpy as np
import pytest

from config_app.services import schema_mappings
from data_app.services import publish
from data_app.sources import registry
from data_app.sources.series import SeriesSource, StoreField
from rta_core.errors import NotFound
from sessions_app.models import DataBinding, Session
from sessions_app.services.updates import create_or_update_session
from tests.test_data_bindings import T0, S, binding, fetch, served

pytestmark = pytest.mark.django_db
MS = 1_000_000
SOURCE = "mem"
# The event mapping the stores' event tests use: "pit" events as event 0x10 of app "race", with their lap.
PIT_EVENT = {
    "source_event": "pit",
    "target_event_app": "race",
    "target_event_id": 0x10,
    "source_event_data_fields": ["lap"],
}


def _table(seconds=60, seed=7):
    """1 kHz ``fast``, 10 Hz ``slow`` with a 2 s hole, an irregular ``irr``, on one time column (NaN = missing)."""
    rng = np.random.default_rng(seed)
    times = T0 + np.arange(seconds * 1000, dtype=np.int64) * MS
    fast = np.sin(np.arange(len(times)) / 50.0)
    slow = np.full(len(times), np.nan)
    slow[::100] = np.arange(len(times[::100]), dtype=np.float64)
    slow[20_000:22_000] = np.nan
    irr = np.full(len(times), np.nan)
    picks = np.cumsum(rng.integers(1, 40, size=len(times)))
    picks = picks[picks < len(times)]
    irr[picks] = rng.normal(size=len(picks))
    events = [(int(times[5000]), "0x10", "pit", {"lap": 3.0}), (int(times[30000]), "oops", "ignored", {})]
    return {"times": times, "cols": {"fast": fast, "slow": slow, "irr": irr}, "events": events}


class MemorySource(SeriesSource):
    name = SOURCE

    def __init__(self, tables):
        self.tables, self.reads, self.down = tables, [], False

    def _get(self, identity):
        table = self.tables.get(identity)
        if table is None:
            raise NotFound("no such data identity")
        return table

    def store_fields(self, identity, mapping):
        return [StoreField(name, "samples") for name in self._get(identity)["cols"]]

    def time_range(self, identity, mapping, group):
        times = self._get(identity)["times"]
        return int(times[0]), int(times[-1])

    def read(self, identity, mapping, group, names, low, high):
        table = self._get(identity)
        i, j = np.searchsorted(table["times"], [low, high + 1] if high < 2**63 - 1 else [low, 2**63 - 1])
        self.reads.append((low, high, j - i))
        return table["times"][i:j], {n: table["cols"][n][i:j] for n in names}

    def event_rows(self, identity, mapping, start, end):
        return [
            e
            for e in self._get(identity)["events"]
            if (start is None or e[0] >= start) and (end is None or e[0] <= end)
        ]

    def check(self):
        if self.down:
            raise ConnectionError("store unreachable")


@pytest.fixture
def memory(monkeypatch):
    source = MemorySource({"run 1": _table()})
    monkeypatch.setattr(registry, "configured", lambda: {SOURCE: source})
    return source


def _session(name="mem-session", **extra):
    create_or_update_session(name, [("set_data_bindings", [{**binding("run 1"), "source": SOURCE, **extra}])])
    return name


def _expected(table, field, kind, channel, data_type="<f8", offset=0):
    times, values = table["times"], table["cols"][field]
    present = ~np.isnan(values)
    return sorted(
        (channel, int(t) + offset, np.asarray([v], dtype=data_type).tobytes())
        for t, v in zip(times[present], values[present])
    )


def _of(samples, channel):
    return [s for s in samples if s[0] == channel]


def test_without_a_mapping_fields_are_channels_in_order_and_the_kind_rule_holds(api, memory):
    table, session = memory.tables["run 1"], _session()
    timestamped = served("timestamped", fetch(api, session, "timestamped", "0-2"))
    for channel, field in enumerate(("fast", "slow", "irr")):
        assert _of(timestamped, channel) == _expected(table, field, "timestamped", channel)
    periodic = served("periodic", fetch(api, session, "periodic", "0-2"))
    assert _of(periodic, 0) == _expected(table, "fast", "periodic", 0)
    assert _of(periodic, 1) == _expected(table, "slow", "periodic", 1), "regular with a hole: periodic runs"
    assert _of(periodic, 2) == [], "irregular fields serve no periodic data"


def test_a_mapping_picks_fields_channels_and_types(api, memory):
    schema_mappings.put_schema_mapping(
        SOURCE,
        "run 1",
        {
            "field_mappings": [
                {"source_field": "slow", "target_channel": 7, "target_channel_data_type": "FLOAT32"},
                {"source_field": "irr", "target_channel": 9, "properties": {"interval": str(MS)}},
                {"source_field": "nope", "target_channel": 11},
            ]
        },
    )
    table, session = memory.tables["run 1"], _session()
    samples = served("timestamped", fetch(api, session, "timestamped", "0-F"))
    assert {s[0] for s in samples} == {7, 9}, "unmapped fields and fields the store lacks serve nothing"
    assert _of(samples, 7) == _expected(table, "slow", "timestamped", 7, "<f4")
    periodic = served("periodic", fetch(api, session, "periodic", "9"))
    assert _of(periodic, 9) == _expected(table, "irr", "periodic", 9), "a declared interval makes a field periodic"


@pytest.mark.parametrize("kind", ["periodic", "timestamped"])
def test_chunk_boundaries_do_not_depend_on_the_request(api, memory, kind):
    session = _session()
    whole = {(c.start, c.end, tuple(c.channel_ids)) for c in fetch(api, session, kind, "0-2")}
    start, end = T0 + 12_345 * MS, T0 + 31_234 * MS  # both inside chunks
    part = fetch(api, session, kind, "0-2", start=start, end=end)
    assert part, "the range holds data"
    for chunk in part:
        assert (chunk.start, chunk.end, tuple(chunk.channel_ids)) in whole
        assert chunk.end >= start and chunk.start <= end


def test_offset_and_remapping_apply_as_to_stored_data(api, memory):
    table = memory.tables["run 1"]
    maps = [(0, 0x100, 0x100)]  # data channel 0 -> session channel 0x100
    session = _session(
        "mem-offset", session_time_offset=5 * S, channel_bindings=binding("x", maps=maps)["channel_bindings"]
    )
    samples = served("periodic", fetch(api, session, "periodic", "100"))
    assert samples == _expected(table, "fast", "periodic", 0x100, offset=5 * S)


def test_reads_are_sliced_and_bounded_requests_read_little(api, memory):
    session = _session()
    fetch(api, session, "timestamped", "0", start=T0 + 10 * S, end=T0 + 11 * S)
    assert max(rows for _, _, rows in memory.reads) <= 100_000, "a bounded request reads whole windows near it"


def test_events_follow_event_ids_or_mappings(api, memory):
    session = _session()
    events = served("events", fetch(api, session, "events"))
    assert [(t, e[0]) for _, t, e in events] == [(int(memory.tables["run 1"]["times"][5000]), 0x10)]
    schema_mappings.put_schema_mapping(
        SOURCE,
        "run 1",
        {
            "event_mappings": [
                {
                    "source_event": "oops",
                    "target_event_app": "app",
                    "target_event_id": 77,
                    "source_event_data_fields": [],
                }
            ]
        },
    )
    events = served("events", fetch(api, session, "events"))
    assert [e[0] for _, _, e in events] == [77], "with event mappings only mapped events are served"


def test_an_identity_the_source_refuses_is_no_data(api, memory):
    create_or_update_session("mem-missing", [("set_data_bindings", [{**binding("no such run"), "source": SOURCE}])])
    assert fetch(api, "mem-missing", "timestamped", "0-") == []


def test_the_source_is_exposed_as_a_data_service_only_when_asked(api, memory, settings):
    url = f"/rta/v2/sources/{SOURCE}/rta/v2/data/run%201/timestamped/0"
    assert api.get(url).status_code == 404
    settings.RTA_EXPOSE_DATA_SERVICE = True
    assert api.get(f"/rta/v2/sources/{SOURCE}/").status_code == 200
    assert api.get("/rta/v2/sources/other/").status_code == 404
    response = api.get(url, {"start": T0, "end": T0 + S - 1})
    assert response.status_code == 200
    from rta_kit import wire

    chunks = wire.read_chunks(b"".join(response.streaming_content))
    table = memory.tables["run 1"]
    expected = [s for s in _expected(table, "fast", "timestamped", 0) if s[1] < T0 + S]
    assert [s for s in served("timestamped", chunks) if s[1] < T0 + S] == expected
    missing = api.get(f"/rta/v2/sources/{SOURCE}/rta/v2/data/nope/timestamped/0")
    assert missing.status_code == 404 and "nope" not in missing.json()["error"]


def test_health_reports_a_source_whose_store_is_down(api, memory):
    assert api.get("/health").status_code == 200
    memory.down = True
    response = api.get("/health")
    assert response.status_code == 503
    assert f"data source {SOURCE}" in response.content.decode()
    memory.down = False
    assert api.get("/health").status_code == 200


def test_publishing_twice_updates_one_session(memory):
    data = publish.IndexedData(
        fields=[publish.IndexedField("fast", interval=MS), publish.IndexedField("irr", "f32")],
        start=T0,
        end=T0 + 60 * S,
        details={"Driver": "A"},
    )
    first = publish.publish(SOURCE, "run 1", data)
    data.details["Driver"] = "B"
    second = publish.publish(SOURCE, "run 1", data)
    assert first.session == second.session and first.mapping_stored and not second.mapping_stored
    assert Session.objects.filter(identity=first.session).count() == 1
    assert DataBinding.objects.filter(session__identity=first.session).count() == 1
    mapping = schema_mappings.get_schema_mapping(SOURCE, "run 1")
    assert [
        (f["source_field"], f["target_channel"], f["target_channel_data_type"]) for f in mapping["field_mappings"]
    ] == [
        ("fast", 0, "DOUBLE64"),
        ("irr", 1, "FLOAT32"),
    ]
    assert mapping["field_mappings"][0]["properties"] == {"interval": str(MS)}


def test_the_admin_says_where_the_data_lives_and_plots_it_through_the_gateway(admin_client, memory, settings):
    from tests.test_data_admin import change_url, plot_url

    memory.tables["run 1"] = _table(seconds=1000)  # a million rows: sampled for the plot
    session = publish.publish(
        SOURCE,
        "run 1",
        publish.IndexedData(
            fields=[publish.IndexedField("fast", interval=MS), publish.IndexedField("slow")],
            start=T0,
            end=T0 + 1000 * S - MS,
        ),
    ).session
    html = admin_client.get(change_url(session)).content.decode()
    section = html[html.index('class="rta-data"') :]
    assert "Where the data lives" in section and "built-in source" in section and "run 1" in section
    assert "2 channels described by the bound configs" in section
    svg = admin_client.get(plot_url(session)).content.decode()
    assert svg.count("<path") >= 2 and "fast" in svg and "slow" in svg
    settings.RTA_ADMIN_PLOT_MAX_SAMPLES = 100_000  # a tenth of the channel
    memory.reads.clear()
    svg = admin_client.get(plot_url(session), {"channels": "0"}).content.decode()
    assert svg.count("<path") >= 1
    assert sum(rows for _, _, rows in memory.reads) < 300_000, "a long range is sampled, not read whole"


@pytest.mark.parametrize(
    "path, status",
    [
        ("/rta/v2/sources/mem/rta/v2/data/run%00x/timestamped/0", 400),  # NUL in the identity
        ("/rta/v2/sources/mem/rta/v2/data/" + "x" * 2000 + "/timestamped/0", 400),  # longer than any identity
        ("/rta/v2/sources/mem/rta/v2/data/run%201/timestamped/zz", 400),  # not a channel expression
        ("/rta/v2/sources/mem/rta/v2/data/run%201/timestamped/0?start=abc", 400),
        ("/rta/v2/sources/nope/rta/v2/data/run%201/timestamped/0", 404),  # no such source
    ],
)
def test_hostile_requests_to_an_exposed_source_are_clear_errors(api, memory, settings, path, status):
    settings.RTA_EXPOSE_DATA_SERVICE = True
    response = api.get(path)
    assert response.status_code == status, response.content[:200]
    assert response["Content-Type"].startswith("application/json") and "error" in response.json()


def test_bounds_beyond_any_data_time_are_no_data(api, memory, settings):
    settings.RTA_EXPOSE_DATA_SERVICE = True  # as on the session endpoints: nothing is that late or that early
    for query in ("start=99999999999999999999999", "end=-99999999999999999999999"):
        response = api.get(f"/rta/v2/sources/{SOURCE}/rta/v2/data/run%201/timestamped/0?{query}")
        assert response.status_code == 200 and b"".join(response.streaming_content) == b""


def test_other_methods_on_an_exposed_source_are_refused(api, memory, settings):
    settings.RTA_EXPOSE_DATA_SERVICE = True
    assert api.post(f"/rta/v2/sources/{SOURCE}/rta/v2/data/run%201/timestamped/0").status_code == 405
    assert api.post(f"/rta/v2/sources/{SOURCE}/").status_code == 405
    assert api.head(f"/rta/v2/sources/{SOURCE}/rta/v2/data/run%201/timestamped/0").status_code == 200


def test_the_admin_page_of_a_session_bound_to_this_server_store(admin_client, memory):
    from tests.test_data_admin import change_url

    create_or_update_session("local-bound", [("set_data_bindings", [binding("car-1")])])  # source "": no mapping
    response = admin_client.get(change_url("local-bound"))
    assert response.status_code == 200
    section = response.content.decode()
    assert "this server&#x27;s chunk store" in section and "none stored" in section


def test_slices_are_read_ahead_in_order_and_a_failed_read_fails_the_read():
    import threading

    from data_app.sources import series

    done = []

    def read(a, b):
        if a == 3:
            raise OSError("the store failed")
        done.append((a, threading.current_thread().name))
        return a

    slices = [(i, i) for i in range(6)]
    for ahead in (0, 1, 2, 10):
        assert list(series._read_ahead(lambda a, b: a, slices, ahead)) == list(range(6)), ahead
    reads = series._read_ahead(read, slices, 2)
    assert next(reads) == 0 and next(reads) == 1 and next(reads) == 2, "in order"
    with pytest.raises(OSError):
        next(reads)
    assert any(name.startswith("source-read") for _, name in done), "later slices read in reader threads"

    calls = []

    def counted(a, b):
        calls.append(a)
        return a

    reads = series._read_ahead(counted, [(i, i) for i in range(100)], 2)
    assert next(reads) == 0
    reads.close()  # the client went away: slices not yet being read are not read
    series._READERS.submit(lambda: None).result()  # the reader queue has moved past this request's reads
    assert len(calls) <= 4, calls


def test_fewer_slices_are_read_ahead_when_they_are_large():
    from data_app.sources import series
    from rta_kit.grid import ChunkGrid

    def plans(count, interval):
        grid = ChunkGrid.for_interval(interval, 8)
        return [series.Plan(None, "t", interval, grid) for _ in range(count)]

    four = plans(4, 100_000)  # the bench's 10 kHz table: 100 s slices of ~40 MB
    assert series._reads_ahead(four, series._slice_width(four)) == series.READS_AHEAD
    wide = plans(50, 100_000)  # 50 fields at 10 kHz: a 100 s slice alone is ~400 MB
    assert series._reads_ahead(wide, series._slice_width(wide)) == 0
    twelve = plans(12, 100_000)  # ~100 MB a slice: one ahead keeps two in hand
    assert series._reads_ahead(twelve, series._slice_width(twelve)) == 1
