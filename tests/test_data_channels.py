import pytest

from data_app.services.channels import MAX_CHANNEL, parse_channels
from rta_core.errors import InvalidArgument


def test_spec_example():
    cs = parse_channels("-5,7,B-D,14-")
    assert cs.ranges == [(0, 5), (7, 7), (0xB, 0xD), (0x14, MAX_CHANNEL)]
    for c in (0, 5, 7, 0xB, 0xC, 0xD, 0x14, 0xFFFF, MAX_CHANNEL):
        assert c in cs
    for c in (6, 8, 0xA, 0xE, 0x13):
        assert c not in cs
    assert cs.matches_any([6, 0xC]) and not cs.matches_any([6, 8])


def test_merges_and_case():
    assert parse_channels("a,b,c-f,10").ranges == [(0xA, 0x10)]
    assert parse_channels("FF,ff").ranges == [(0xFF, 0xFF)]


@pytest.mark.parametrize(
    "text", ["", " ", ",", "1,", ",1", "1,,2", "-", "1-2-3", "x", "0x10", "5-3", "1 ,2", "123456789", "--1", "1--"]
)
def test_malformed(text):
    with pytest.raises(InvalidArgument):
        parse_channels(text)


@pytest.mark.django_db
def test_q_filters_rows():
    from data_app.models import Chunk

    for ch in (1, 5, 7, 0x20):
        Chunk.objects.create(
            identity="q",
            kind="periodic",
            channel=ch,
            window_start=0,
            span=1,
            start_time=0,
            end_time=0,
            file="f",
            offset=0,
            packed_length=0,
            unpacked_length=0,
            sample_count=0,
        )
    got = sorted(Chunk.objects.filter(parse_channels("-5,1F-").q()).values_list("channel", flat=True))
    assert got == [1, 5, 0x20]
