"""The codec ``tsamples`` wire reader reads every message exactly as protobuf does, or leaves it to protobuf."""

import numpy as np
import pytest
from advanced_streams import codec_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from data_app.ingest import messages as m
from data_app.ingest import samples_wire
from rta_kit.varints import encode_varint

INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=8)


def _message(format_id, feed, parameters):
    message = codec_pb2.ParameterSamplesMessage(dataFormatId=format_id, feed=feed)
    for key, epoch, times, values in parameters:
        entry = message.parameters[key]
        entry.epoch_nanos = epoch
        entry.timestamps_nanos.extend(times)
        entry.values.extend(values)
    return message


def _as_protobuf_reads(value):
    message = codec_pb2.ParameterSamplesMessage.FromString(value)
    return (
        message.dataFormatId,
        message.feed,
        {
            key: (entry.epoch_nanos, list(entry.timestamps_nanos), np.array(entry.values, dtype=np.float64).tobytes())
            for key, entry in message.parameters.items()
        },
    )


def _as_read(read):  # values as bytes: a corrupted double may be a NaN
    format_id, feed, parameters = read
    return format_id, feed, {key: (epoch, times.tolist(), values.tobytes()) for key, epoch, times, values in parameters}


@st.composite
def _parameters(draw):
    shared = draw(st.lists(INT64, max_size=6))
    out = []
    for key in draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5, unique=True)):
        times = shared if draw(st.booleans()) else draw(st.lists(INT64, max_size=6))
        values = draw(st.lists(st.floats(allow_nan=False), min_size=len(times), max_size=len(times)))
        out.append((key, draw(INT64), times, values))
    return out


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, _parameters())
def test_reads_what_protobuf_reads(format_id, feed, parameters):
    value = _message(format_id, feed, parameters).SerializeToString()
    read = samples_wire.read_samples(value)
    assert read is not None
    assert _as_read(read) == _as_protobuf_reads(value)


@settings(max_examples=200, deadline=None)
@given(_parameters(), st.data())
def test_truncated_or_corrupted_bytes_are_left_to_protobuf_or_read_as_protobuf_reads_them(parameters, data):
    value = bytearray(_message("f", "", parameters).SerializeToString())
    if value and data.draw(st.booleans()):
        del value[data.draw(st.integers(0, len(value) - 1)) :]
    elif value:
        value[data.draw(st.integers(0, len(value) - 1))] = data.draw(st.integers(0, 255))
    read = samples_wire.read_samples(bytes(value))
    try:
        expected = _as_protobuf_reads(bytes(value))
    except Exception:
        expected = None
    if read is not None:
        assert expected is not None and _as_read(read) == expected


def test_parameters_with_the_same_timestamps_share_one_array():
    times = [10, 20, 30]
    value = _message("f", "", [(0, 5, times, [1, 2, 3]), (1, 5, times, [4, 5, 6]), (2, 5, [1, 2], [7, 8])])
    _, _, parameters = samples_wire.read_samples(value.SerializeToString())
    by_key = {key: times for key, _, times, _ in parameters}
    assert by_key[0] is by_key[1] and by_key[0] is not by_key[2]


def _field(number, wire_type, body):
    return encode_varint(number << 3 | wire_type) + body


def _length_delimited(number, body):
    return _field(number, 2, encode_varint(len(body)) + body)


def _entry(key, entry_body):
    return _length_delimited(3, _field(1, 0, encode_varint(key)) + _length_delimited(2, entry_body))


# Valid protobuf that is not in the layout the reader takes: protobuf reads it instead.
UNPACKED_TIMES = _entry(
    1,
    _field(2, 0, encode_varint(7))
    + _field(2, 0, encode_varint(8))
    + _length_delimited(3, np.array([1.0, 2.0]).tobytes()),
)
TWICE_PACKED = _entry(
    1,
    _length_delimited(2, b"\x07")
    + _length_delimited(2, b"\x08")
    + _length_delimited(3, np.array([1.0, 2.0]).tobytes()),
)
VALUE_TWICE = _length_delimited(
    3,
    _field(1, 0, b"\x01")
    + _length_delimited(2, _length_delimited(2, b"\x07\x08"))
    + _length_delimited(2, _length_delimited(3, np.array([1.0, 2.0]).tobytes())),
)


@pytest.mark.parametrize("value", [UNPACKED_TIMES, TWICE_PACKED, VALUE_TWICE])
def test_other_valid_layouts_are_left_to_protobuf_and_decode_the_same(value):
    assert samples_wire.read_samples(value) is None
    ((key, epoch, times, values),) = m.parse_data(m.TSAMPLES, value).parameters
    assert (key, epoch, times.tolist(), values.tolist()) == (1, 0, [7, 8], [1.0, 2.0])


@pytest.mark.parametrize(
    "value",
    [
        _length_delimited(1, b"\xff\xfe"),  # format id not UTF-8
        _length_delimited(1, b"abc")[:-1],  # truncated
        _length_delimited(9, b"x"),  # unknown field
        _entry(1, _length_delimited(3, b"\x00" * 7)),  # doubles of 7 bytes
        _entry(1, _length_delimited(2, b"\x80")),  # truncated varint
    ],
)
def test_malformed_bytes_are_refused(value):
    assert samples_wire.read_samples(value) is None
    with pytest.raises(m.MalformedMessage) as exc:
        m.parse_data(m.TSAMPLES, value)
    assert exc.value.reason == "bad protobuf"
