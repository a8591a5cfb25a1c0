"""Advanced Streams decoding (JSON vs protobuf codec), channel layouts and generated configs (no database)."""

import numpy as np
import orjson
import pytest
from advanced_streams import codec_pb2
from rta.model import data_pb2

from config_app.services.validation import validate_config
from data_app.ingest import configs, formats
from data_app.ingest import messages as m
from data_app.ingest.runner import decode_line, encode_line
from rta_kit.items import times as item_times
from rta_kit.timestamped import TimestampedRun
from tests.test_ingest_support import ATLAS, FORMAT_A, FORMAT_B


def test_keys():
    assert m.split_key(b"tdata:stream:with:colons") == ("tdata", "stream:with:colons")
    assert m.split_key("$start:s1") == ("$start", "s1")
    for bad in (None, b"nocolon", b":s1", b"\xff\xfe:s"):
        with pytest.raises(m.MalformedMessage) as exc:
            m.split_key(bad)
        assert exc.value.reason == "bad key"


def _samples_codec():
    message = codec_pb2.ParameterSamplesMessage(dataFormatId="f", feed="raw")
    entry = message.parameters[1]
    entry.epoch_nanos = 1000
    entry.timestamps_nanos.extend([1, 2, 3])
    entry.values.extend([0.5, 1.5, 2.5])
    return message.SerializeToString()


def test_json_and_protobuf_tsamples_decode_to_the_same_arrays():
    from_json = m.parse_data(
        m.TSAMPLES,
        orjson.dumps(
            {
                "feed": "raw",
                "format": "f",
                "data": {"p:A": {"values": [0.5, 1.5, 2.5], "epoch": 1000, "time": [1, 2, 3]}},
            }
        ),
    )
    from_codec = m.parse_data(m.TSAMPLES, _samples_codec())
    for decoded, key in ((from_json, "p:A"), (from_codec, 1)):
        assert (decoded.format_id, decoded.feed) == ("f", "raw")
        ((k, epoch, times, values),) = decoded.parameters
        assert k == key and epoch == 1000
        assert times.dtype == np.int64 and times.tolist() == [1, 2, 3]
        assert values.dtype == np.float64 and values.tolist() == [0.5, 1.5, 2.5]


def test_json_with_leading_whitespace_and_protobuf_starting_with_a_newline_byte():
    # b"\n" is both JSON whitespace and the tag of codec field 1: each is tried and told apart.
    padded = b"\n  " + orjson.dumps({"epoch": 0, "time": 5, "id": "E:A", "values": [1]})
    assert m.parse_data(m.EVENTS, padded).time == 5
    codec = _samples_codec()
    assert codec.startswith(b"\n")
    assert m.parse_data(m.TSAMPLES, codec).format_id == "f"


def test_tdata_protobuf_statuses_and_aggregates():
    message = codec_pb2.ParameterDataMessage(dataFormatId="f", epoch_nanos=10, timestamps_nanos=[0, 5])
    message.parameters[0].statuses.extend([1, 0])
    message.parameters[0].avg_values.extend([1.0, 2.0])
    message.parameters[0].max_values.extend([3.0, 4.0])
    decoded = m.parse_data(m.TDATA, message.SerializeToString())
    assert not decoded.by_position and decoded.times.tolist() == [0, 5]
    assert sorted(decoded.parameters[0]) == ["avg", "max", "status"]


@pytest.mark.parametrize(
    "kind, value, reason",
    [
        (m.TSAMPLES, b"{", "bad json"),
        (m.TSAMPLES, b"[]", "bad json"),
        (m.TSAMPLES, b"hello world", "bad protobuf"),
        (m.TSAMPLES, b"\x0a\x01f\x78\x01", "bad protobuf"),  # a field the message does not have
        (m.TSAMPLES, b"", "empty value"),
        (m.TSAMPLES, orjson.dumps({"feed": "", "data": {}}), "wrong types"),  # no format
        (
            m.TSAMPLES,
            orjson.dumps({"format": "f", "data": {"p": {"values": [1], "epoch": 0, "time": [1, 2]}}}),
            "wrong types",
        ),
        (
            m.TSAMPLES,
            orjson.dumps({"format": "f", "data": {"p": {"values": ["x"], "epoch": 0, "time": [1]}}}),
            "wrong types",
        ),
        (
            m.TSAMPLES,
            orjson.dumps({"format": "f", "data": {"p": {"values": [1], "epoch": 0, "time": [1.5]}}}),
            "wrong types",
        ),
        (
            m.TSAMPLES,
            orjson.dumps({"format": "f", "data": {"p": {"values": [1], "epoch": 2**63 - 1, "time": [5]}}}),
            "wrong types",
        ),
        (
            m.TDATA,
            orjson.dumps({"format": "f", "time": [1, 2], "data": [{"status": [1], "avg": [1, 2]}]}),
            "wrong types",
        ),
        (m.TDATA, orjson.dumps({"format": "f", "time": [1], "data": [{"avg": [1]}]}), "wrong types"),
        (m.EVENTS, orjson.dumps({"epoch": True, "time": 1, "id": "e", "values": []}), "wrong types"),
    ],
)
def test_malformed_values(kind, value, reason):
    with pytest.raises(m.MalformedMessage) as exc:
        m.parse_data(kind, value)
    assert exc.value.reason == reason


def test_null_values_are_nan():
    decoded = m.parse_data(
        m.TSAMPLES, orjson.dumps({"format": "f", "data": {"p": {"values": [1.0, None], "epoch": 0, "time": [1, 2]}}})
    )
    values = decoded.parameters[0][3]
    assert values[0] == 1.0 and np.isnan(values[1])


def test_session_messages():
    session = m.parse_session(
        orjson.dumps(
            {
                "id": "abc",
                "state": "open",
                "details": {"Driver": "X"},
                "model": {"group": "g", "version": 2},
                "dependencies": {"dataFormat": ["f"]},
                "activity": {"start": "2020-01-01T00:00:00Z", "durationNanos": 5},
            }
        )
    )
    assert (session.id, session.state, session.version, session.duration) == ("abc", "open", "2", 5)
    for bad in (
        {"state": "open"},
        {"id": "a", "state": "running"},
        {"id": "a", "state": "open", "details": []},
        {"id": "a", "state": "open", "dependencies": {"dataFormat": "f"}},
        {"id": "a", "state": "open", "activity": {"durationNanos": -1}},
    ):
        with pytest.raises(m.MalformedMessage):
            m.parse_session(orjson.dumps(bad))


def test_layout_numbers_channels_by_feed_parameter_and_aggregate():
    layout = formats.layout("A", FORMAT_A)
    feed = layout.feeds[""]
    assert layout.channel_count == 6 and feed.interval == 10_000_000
    assert [(p.identifier, p.channels) for p in feed.parameters] == [
        ("vCar:Chassis", {"avg": 0, "min": 1, "max": 2}),
        ("nEngine:Engine", {"avg": 3}),
        ("gLat:Chassis", {"avg": 4, "first": 5}),
    ]
    assert feed.by_identifier["gLat:Chassis"].primary_channel == 4
    two_feeds = formats.layout("x", {"feeds": {"b": {"parameters": ["q:A"]}, "a": {"parameters": ["p:A"]}}})
    assert two_feeds.feeds["a"].parameters[0].channels == {"avg": 0}  # feeds in name order
    assert two_feeds.feeds["b"].interval == 0


def test_generated_config_is_a_valid_rta_config():
    document = configs.generate(formats.layout("A", FORMAT_A), [ATLAS])
    validate_config(document)
    parameters = {p["id"]: p for app in document.values() for p in app.get("parameters", [])}
    assert set(parameters) == {
        "vCar:Chassis",
        "vCar_min:Chassis",
        "vCar_max:Chassis",
        "nEngine:Engine",
        "gLat:Chassis",
        "gLat_first:Chassis",
    }
    assert parameters["vCar:Chassis"]["unit"] == "kph" and parameters["vCar:Chassis"]["conv"] == "kph"
    assert parameters["vCar:Chassis"]["channels"] == [0]
    chassis = document["Chassis"]
    assert chassis["tree"]["groups"][0]["id"] == "Chassis/Dynamics"
    channels = {c["id"]: c for app in document.values() for c in app.get("channels", [])}
    assert sorted(channels) == list(range(6))
    assert {c["source"] for c in channels.values()} == {"timestamped"}
    assert channels[3]["interval"] == 10_000_000
    events = document["TAG320BIOS"]["events"]
    assert events == [
        {
            "id": configs.event_definition_id("IO2-2B02:TAG320BIOS"),
            "code": "IO2-2B02:TAG320BIOS",
            "desc": "Door open",
            "pri": "high",
        }
    ]
    # Format B without any ATLAS description, and a parameter repeated in two feeds.
    validate_config(configs.generate(formats.layout("B", FORMAT_B), []))
    repeated = configs.generate(
        formats.layout("R", {"feeds": {"": {"parameters": ["p:A"]}, "fast": {"parameters": ["p:A"]}}}), []
    )
    assert [p["id"] for p in repeated["A"]["parameters"]] == ["p:A", "p_fast:A"]


def test_live_items_of_an_array_write_keep_every_sample_and_time():
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.integers(0, 5, size=3000) * 1000) + 10**18
    values = rng.normal(size=3000)
    run = TimestampedRun.from_times(times, values.astype("<f8").tobytes(), 8)
    items = [data_pb2.TimestampedData.FromString(body) for body, _first, _last in run.item_bodies(7, 1024)]
    assert [len(i.timestamp_deltas) for i in items] == [1024, 1024, 952]
    got_times = [t for i in items for t in item_times("timestamped", i)]
    got_values = np.frombuffer(b"".join(i.buffer for i in items), dtype="<f8")
    assert got_times == times.tolist() and got_values.tolist() == values.tolist()
    assert {i.channel_id for i in items} == {7} and items[0].timestamp_deltas_scale == 1000


def test_recorded_file_lines_round_trip():
    for key, value in (
        (b"$start:s", b""),
        (b"tdata:s", b'{"a":1}'),
        (b"tdata:s", _samples_codec()),
        (b"tdata:s", b"a\tb"),
        (b"x:s", b"base64:looks encoded"),
    ):
        line = encode_line(key, value)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode_line(line) == (key, value)


def test_whole_float_times_are_integers_and_keep_the_digits_of_ints_beside_them():
    # The official Python client writes times as floats (s * interval: 10000000.0).
    decoded = m.parse_data(
        m.TSAMPLES,
        orjson.dumps(
            {"format": "f", "data": {"p": {"values": [1, 2, 3], "epoch": 5.0, "time": [0.0, 1e7, 2**62 + 1]}}}
        ),
    )
    ((_, epoch, times, _),) = decoded.parameters
    assert epoch == 5 and isinstance(epoch, int)
    assert times.dtype == np.int64 and times.tolist() == [0, 10_000_000, 2**62 + 1]
    for bad in ([0.5], [1.0, 2.25], [2.0**63], [-(2.0**64)]):
        with pytest.raises(m.MalformedMessage) as exc:
            m.parse_data(m.TDATA, orjson.dumps({"format": "f", "time": bad, "data": []}))
        assert exc.value.reason == "wrong types" and "whole number" in exc.value.message
    event = m.parse_data(m.EVENTS, orjson.dumps({"epoch": 1e9, "time": 5.0, "id": "E:A", "values": []}))
    assert (event.epoch, event.time) == (10**9, 5)
    with pytest.raises(m.MalformedMessage):
        m.parse_data(m.EVENTS, orjson.dumps({"epoch": 0, "time": 5.5, "id": "E:A", "values": []}))
    assert m.parse_session(orjson.dumps({"id": "a", "state": "open", "activity": {"durationNanos": 7.0}})).duration == 7
