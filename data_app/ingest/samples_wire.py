"""The protobuf-codec ``tsamples`` message read straight from its wire bytes, for the common layout.

A ``ParameterSamplesMessage`` is mostly two packed arrays per parameter: the
values (doubles, which numpy can view in place) and the timestamps (varints),
and the parameters of one message usually share their timestamps byte for
byte. Read through protobuf's Python API, every parameter's arrays are
converted element by element; read here, the values are not converted at all
and each distinct timestamp array is decoded once (by protobuf), whatever the
number of parameters sharing it.

Only the layout protobuf writers produce is read here: the three known fields
of each message, strings that are UTF-8, packed arrays each given at most
once, varints of at most ten bytes. Anything else (unknown fields, unpacked
arrays, truncation) returns None, and the caller parses the message with
protobuf, which accepts or refuses it as it always has. So this changes how
fast a message is read, never what it reads as.
"""

import numpy as np
from advanced_streams import codec_pb2
from google.protobuf.message import DecodeError

from rta_kit.varints import encode_varint

_TIMESTAMPS_ONLY = codec_pb2.ParameterSampleValuesWithTimestamps.FromString


class Unhandled(Exception):
    """The bytes are not in the layout read here (protobuf decides what they are)."""


def _varint(buf, pos):
    """``(value, next position)`` of the varint at ``pos`` (unsigned, at most ten bytes)."""
    byte = buf[pos]  # IndexError past the end: truncated
    if byte < 0x80:
        return byte, pos + 1
    value, shift = byte & 0x7F, 7
    while shift < 63:
        pos += 1
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + 1
        shift += 7
    byte = buf[pos + 1]  # the tenth byte: one bit of the value left
    if byte > 1:
        raise Unhandled
    return value | byte << 63, pos + 2


def _signed(value, bits):
    """A varint's value as protobuf's int32/int64 (two's complement of its low ``bits``)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _length(buf, pos, end):
    length, pos = _varint(buf, pos)
    if pos + length > end:
        raise Unhandled
    return pos, pos + length


def _entry_value(buf, pos, end):
    """``(epoch, timestamps bytes, values bytes)`` of a ParameterSampleValuesWithTimestamps."""
    epoch, timestamps, values = 0, b"", b""
    seen = set()
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag == 0x08:  # epoch_nanos
            value, pos = _varint(buf, pos)
            epoch = _signed(value, 64)
        elif tag in (0x12, 0x1A) and tag not in seen:  # packed timestamps_nanos / values, once each
            seen.add(tag)
            start, pos = _length(buf, pos, end)
            if tag == 0x12:
                timestamps = buf[start:pos]
            else:
                values = buf[start:pos]
        else:
            raise Unhandled
    if pos != end:
        raise Unhandled
    return epoch, timestamps, values


def _map_entry(buf, pos, end):
    """``(key, epoch, timestamps bytes, values bytes)`` of one ``parameters`` map entry."""
    key, value = 0, None
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag == 0x08:
            raw, pos = _varint(buf, pos)
            key = _signed(raw, 32)
        elif tag == 0x12 and value is None:  # given twice, protobuf would merge the two
            start, pos = _length(buf, pos, end)
            value = _entry_value(buf, start, pos)
        else:
            raise Unhandled
    if pos != end:
        raise Unhandled
    return (key, *(value or (0, b"", b"")))


def _text(buf, start, end):
    try:
        return buf[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise Unhandled from None


def _decode_timestamps(raw):
    """int64 timestamps of a packed varint field's body, decoded by protobuf."""
    message = _TIMESTAMPS_ONLY(b"\x12" + encode_varint(len(raw)) + raw)
    return np.array(message.timestamps_nanos, dtype=np.int64)


def read_samples(value):
    """``(format id, feed, [(index, epoch, times, values)])``, or None when protobuf must read ``value``.

    ``times`` arrays are shared by parameters whose timestamps are the same
    bytes (never change them in place); ``values`` are read-only float64 views
    of ``value``. A repeated map key keeps its last entry, as in protobuf.
    """
    try:
        return _read(value)
    except (Unhandled, IndexError, DecodeError):
        return None


def _read(value):
    buf = bytes(value)
    pos, end = 0, len(buf)
    format_id = feed = ""
    entries = {}
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag not in (0x0A, 0x12, 0x1A):
            raise Unhandled
        start, pos = _length(buf, pos, end)
        if tag == 0x1A:
            key, epoch, timestamps, values = _map_entry(buf, start, pos)
            entries[key] = (epoch, timestamps, values)  # a repeated key keeps its last entry
        elif tag == 0x0A:
            format_id = _text(buf, start, pos)
        else:
            feed = _text(buf, start, pos)
    decoded = {}
    parameters = []
    for key, (epoch, timestamps, values) in entries.items():
        if len(values) % 8:
            raise Unhandled
        times = decoded.get(timestamps)
        if times is None:
            times = decoded[timestamps] = _decode_timestamps(timestamps)
        parameters.append((key, epoch, times, np.frombuffer(values, dtype="<f8")))
    return format_id, feed, parameters
