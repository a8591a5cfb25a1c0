"""The Data section of the session admin: the per-channel summary and the downsampled SVG plot."""

import json
import math
import re
import struct
import xml.etree.ElementTree as ET

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from rta.model import data_pb2

from config_app.models import JSON_CONTENT_TYPE
from config_app.services import store as config_store
from data_app.admin import plot
from data_app.admin.summary import data_summary
from data_app.models import Chunk
from data_app.services.sink import DataSink
from sessions_app.services.updates import create_or_update_session

pytestmark = pytest.mark.django_db

S = 1_000_000_000
T0 = 1_716_213_600 * S  # 2024-05-20T14:00:00Z
SVG = "{http://www.w3.org/2000/svg}"
CONFIG = {
    "t": {
        "parameters": [
            {"id": "vTest:t", "name": "vTest", "desc": "test speed", "conv": "half:t", "channels": [0x10]},
        ],
        "channels": [
            {"id": 0x10, "source": "periodic", "type": "s16", "interval": 10_000_000},
            {"id": 0x20, "name": "TChan", "source": "timestamped", "type": "f64"},
        ],
        "conversions": [{"name": "half:t", "unit": "m/s", "rational": {"coeffs": [0, 0.5, 0, 0, 0, 1]}}],
    }
}


def change_url(identity):
    return f"/admin/sessions_app/session/{quote(identity)}/change/"


def plot_url(identity):
    return f"/admin/sessions_app/session/{quote(identity)}/data-plot.svg"


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def periodic(channel, start, values, interval=10_000_000):
    return data_pb2.PeriodicData(
        channel_id=channel,
        start_timestamp=start,
        interval=interval,
        samples=len(values),
        buffer=struct.pack(f"<{len(values)}h", *values),
    )


def write(identity, items):
    sink = DataSink(identity)
    for kind, item in items:
        sink.add(kind, item)
    sink.flush()


@pytest.fixture
def session():
    """A session with 2 min of 100 Hz int16 (0x10), timestamped f64 (0x20), row data and events, config bound."""
    config_store.put_config("admin-test", JSON_CONTENT_TYPE, json.dumps(CONFIG).encode())
    laps = [
        {
            "id": f"lap-{n}",
            "category": "Laps",
            "label": f"Lap {n}",
            "start_time": T0 + n * 40 * S,
            "end_time": T0 + (n + 1) * 40 * S,
        }
        for n in range(3)
    ]
    create_or_update_session(
        "s1",
        [("set_markers", laps), ("set_config_bindings", [{"identifier": "admin-test", "channel_offset": 0}])],
        create={"timestamp": "2024-05-20T14:00:00Z"},
    )
    wave = [int(1000 * math.sin(i / 50)) for i in range(12_000)]
    times = [T0 + i * 700_000_000 + (i % 3) * 1_000_000 for i in range(170)]
    values = [20.0 + i / 10 for i in range(170)]
    values[5], values[9] = float("nan"), float("inf")
    write(
        "s1",
        [
            ("periodic", periodic(0x10, T0, wave)),
            (
                "timestamped",
                data_pb2.TimestampedData(
                    channel_id=0x20,
                    start_timestamp=times[0],
                    timestamp_deltas_scale=1,
                    timestamp_deltas=[0] + [b - a for a, b in zip(times, times[1:])],
                    buffer=struct.pack(f"<{len(values)}d", *values),
                ),
            ),
            ("row", data_pb2.RowData(channel_ids=[0x30, 0x31], timestamp=T0 + S, buffer=b"\x01\x02")),
            ("events", data_pb2.Event(event_definition_id=1, app_name="t", timestamp=T0 + 2 * S, status_text="e")),
        ],
    )
    return "s1"


def traces(svg_bytes):
    root = ET.fromstring(svg_bytes)
    assert root.tag == f"{SVG}svg"
    return root, root.findall(f".//{SVG}path")


def points(path):
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]([-\d.]+) ([-\d.]+)", path.get("d"))]


# --- summary ---------------------------------------------------------------------------------


def test_summary_aggregates_the_chunk_index(session):
    summary = data_summary(session)
    by_key = {(c.kind, c.channel): c for c in summary.channels}
    assert [c.kind for c in summary.channels] == ["periodic", "timestamped", "row", "events"]
    periodic_ch = by_key[("periodic", 0x10)]
    assert (periodic_ch.samples, periodic_ch.start, periodic_ch.end) == (12_000, T0, T0 + 11_999 * 10_000_000)
    assert periodic_ch.label.name == "vTest" and periodic_ch.label.unit == "m/s"
    assert round(periodic_ch.rate_hz, 6) == 100
    assert by_key[("timestamped", 0x20)].label.name == "TChan"  # named by its channel entry
    assert by_key[("timestamped", 0x20)].samples == 170
    row = next(c for c in summary.channels if c.kind == "row")
    assert row.channel_ids == [0x30, 0x31] and row.samples == 1
    stored = {(c.kind, c.channel): (c.stored_bytes, c.chunks) for c in summary.channels}
    for (kind, channel), (stored_bytes, chunks) in stored.items():
        rows = Chunk.objects.filter(identity=session, kind=kind, channel=channel)
        assert (stored_bytes, chunks) == (sum(r.packed_length for r in rows), rows.count())
    assert summary.samples == 12_000 + 170 + 1 + 1
    assert [k["kind"] for k in summary.kinds()] == ["periodic", "timestamped", "row", "events"]


def test_config_channel_offset_moves_the_labels():
    config_store.put_config("admin-test", JSON_CONTENT_TYPE, json.dumps(CONFIG).encode())
    create_or_update_session("s2", [("set_config_bindings", [{"identifier": "admin-test", "channel_offset": 0x100}])])
    write("s2", [("periodic", periodic(0x110, T0, [1, 2, 3]))])
    (channel,) = data_summary("s2").channels
    assert channel.channel == 0x110 and channel.label.name == "vTest"


# --- the change page -------------------------------------------------------------------------


def test_change_page_shows_the_data_summary_and_plot(staff, session):
    response = staff.get(change_url(session))
    assert response.status_code == 200
    html = response.content.decode()
    section = html[html.index('class="rta-data"') :]
    assert f"{12_000 + 170 + 1 + 1:,}</strong> samples in 4 channels" in section
    assert "vTest" in section and "(m/s)" in section and "TChan" in section and "30,31" in section
    assert "12,000" in section and "100 Hz" in section
    assert f'<img src="{plot_url(session)}"' in section
    assert f'{plot_url(session)}?channels=10"' in section  # each plottable channel links to its own plot


def test_the_data_panel_reaches_the_session_page_through_the_hook(staff, session):
    from data_app.admin import session_data
    from sessions_app.admin import panels

    assert session_data.PANEL in panels.registered()  # registered by data_app's admin, not imported by sessions_app
    html = staff.get(change_url(session)).content.decode()
    assert html.index(">Timeline</h2>") < html.index(">Data</h2>") < html.index('class="rta-data"')
    assert 'class="module aligned rta-panel rta-data-set"' in html


def test_change_page_of_a_session_without_data(staff):
    create_or_update_session("empty")
    html = staff.get(change_url("empty")).content.decode()
    assert "No data stored for this session yet." in html
    root, paths = traces(staff.get(plot_url("empty")).content)
    assert paths == [] and "No periodic or timestamped data" in "".join(root.itertext())


# --- the plot --------------------------------------------------------------------------------


def test_plot_is_svg_with_one_path_per_channel(staff, session):
    response = staff.get(plot_url(session))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    root, paths = traces(response.content)
    assert [p.get("data-channel") for p in paths] == ["10", "20"]  # row data and events are not plotted
    text = " ".join(root.itertext())
    assert "vTest" in text and "TChan" in text and "Lap 1" in text and "UTC" in text
    wave, temps = paths
    # 0x10 is shown in its engineering unit (x 0.5), NaN and inf samples of 0x20 are left out.
    assert float(wave.get("data-max")) == pytest.approx(500, abs=1) and float(wave.get("data-min")) < -499
    assert float(temps.get("data-max")) == pytest.approx(36.9)
    assert "nan" not in temps.get("d") and "inf" not in temps.get("d")
    assert int(wave.get("data-samples")) == 12_000 and int(temps.get("data-samples")) == 170

    # The event at T0 + 2 s is flagged, its text in the tooltip; outside the range it is not.
    flags = [g for g in root.iter(f"{SVG}g") if g.get("class") == "rta-event"]
    assert [g.find(f"{SVG}title").text for g in flags] == ["e at 14:00:02.000"]
    late, _ = traces(staff.get(plot_url(session), {"start": T0 + 10 * S}).content)
    assert not [g for g in late.iter(f"{SVG}g") if g.get("class") == "rta-event"]

    _, (only,) = traces(staff.get(plot_url(session), {"channels": "10"}).content)
    assert only.get("data-channel") == "10"
    _, none = traces(staff.get(plot_url(session), {"channels": "99"}).content)
    assert none == []


def test_plot_time_range(staff, session):
    start, end = T0 + 10 * S, T0 + 20 * S
    root, (wave, temps) = traces(staff.get(plot_url(session), {"start": start, "end": end}).content)
    assert (int(root.get("data-start")), int(root.get("data-end"))) == (start, end)
    assert int(wave.get("data-samples")) == 1001  # 100 Hz, both ends included
    assert int(temps.get("data-samples")) == sum(
        1 for i in range(170) if start <= T0 + i * 700_000_000 + (i % 3) * 1_000_000 <= end
    )


def test_plot_downsamples_and_keeps_spikes(staff):
    create_or_update_session("long")
    n = 300_000  # 5 minutes at 1 kHz
    values = [0] * n
    values[123_457], values[54_321] = 30_000, -20_000
    write(
        "long",
        [
            ("periodic", periodic(0x40, T0 + i * 1_000_000, values[i : i + 10_000], interval=1_000_000))
            for i in range(0, n, 10_000)
        ],
    )
    root, (path,) = traces(staff.get(plot_url("long"), {"width": 480}).content)
    columns = int(root.get("data-columns"))
    assert columns == 480 - plot.GUTTER - plot.RIGHT
    assert int(path.get("data-samples")) == n
    coords = points(path)
    assert int(path.get("data-points")) == len(coords) <= 4 * columns  # bounded by the width, not the data
    assert (float(path.get("data-max")), float(path.get("data-min"))) == (30_000, -20_000)
    # Both one-sample spikes reach their own pixel column: the highest and lowest points of the line.
    top = min(coords, key=lambda p: p[1])
    bottom = max(coords, key=lambda p: p[1])
    assert top[0] == pytest.approx(plot.GUTTER + (123_457 / n) * columns, abs=1.5)
    assert bottom[0] == pytest.approx(plot.GUTTER + (54_321 / n) * columns, abs=1.5)
    baseline = [y for x, y in coords if abs(x - top[0]) > 3 and abs(x - bottom[0]) > 3]
    assert top[1] < min(baseline) - 20 and bottom[1] > max(baseline) + 15


def test_plot_sample_cap_reads_chunks_spread_over_the_range(staff, settings):
    create_or_update_session("capped")
    n = 200_000
    saw = [(k % 200) - 100 for k in range(10_000)]
    write(
        "capped", [("periodic", periodic(1, T0 + i * 1_000_000, saw, interval=1_000_000)) for i in range(0, n, 10_000)]
    )
    chunks = Chunk.objects.filter(identity="capped").count()
    assert chunks > 4
    settings.RTA_ADMIN_PLOT_MAX_SAMPLES = n // 4
    root, (path,) = traces(staff.get(plot_url("capped")).content)
    read = int(path.get("data-samples"))
    assert 0 < read <= n // 4 + n // chunks  # the cap, give or take one chunk
    assert "chunks read (sample cap)" in "".join(root.itertext())
    assert path.get("d").count("M") > 1  # the line breaks over the chunks left out
    xs = [x for x, _ in points(path)]
    assert max(xs) - min(xs) > 0.7 * int(root.get("data-columns"))  # still spread over the whole range


def test_plot_bad_requests(staff, session):
    for params, message in (
        ({"channels": "zz"}, "hexadecimal"),
        ({"start": "x"}, "start must be an integer"),
        ({"start": T0 + 5, "end": T0}, "is after end"),
        ({"width": 5}, "width must be between"),
    ):
        response = staff.get(plot_url(session), params)
        assert response.status_code == 400, params
        assert message in response.json()["error"]
    response = staff.get(plot_url("nope"))
    assert response.status_code == 404 and "not found" in response.json()["error"]


def test_plot_needs_staff_with_view_permission(client, session):
    anonymous = client.get(plot_url(session))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(User.objects.create_user("visitor", password="pw"))
    not_staff = client.get(plot_url(session))
    assert not_staff.status_code == 302 and "/admin/login/" in not_staff["Location"]
    client.force_login(User.objects.create_user("clerk", password="pw", is_staff=True))
    assert client.get(plot_url(session)).status_code == 403


def test_names_from_configs_are_escaped_and_odd_configs_tolerated(staff):
    hostile = {
        "h": {
            "parameters": [{"id": "p:h", "name": 'a\x01<b>&"x', "desc": "d", "conv": "missing:h", "channels": [7]}],
            "channels": [{"id": 7, "type": "s16"}],
        }
    }
    config_store.put_config("hostile", JSON_CONTENT_TYPE, json.dumps(hostile).encode())
    create_or_update_session(
        "h1", [("set_config_bindings", [{"identifier": "hostile"}, {"identifier": "never-published"}])]
    )
    write("h1", [("periodic", periodic(7, T0, [1, 5, 3]))])
    root, (path,) = traces(staff.get(plot_url("h1")).content)  # parses as XML
    assert 'a<b>&"x' in "".join(root.itertext())
    assert float(path.get("data-max")) == 5  # an unknown conversion name counts as 1:1
    html = staff.get(change_url("h1")).content.decode()
    assert "a\x01&lt;b&gt;&amp;&quot;x" in html
    from data_app.admin.summary import labels_from_document

    assert labels_from_document({"x": {"parameters": "nope", "channels": [{"id": "7"}, 5]}}) == {}
    assert labels_from_document([1, 2]) == {}
