"""The session query dialect and typed sorts (spec §2, §4), through the service layer.

Everything here is dialect-neutral, so it also runs on the embedded SQLite
database (``make test-embedded``): both SQL dialects must give the same answers.
"""

import json

import pytest

from rta_core.errors import InvalidArgument
from sessions_app.query.compiler import compile_query, parse_query
from sessions_app.services.listing import list_sessions
from tests.factories import make_session

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]

# Instants: s4 (Feb 28 23:00Z) < s1 (09:00Z) < s2 (09:30Z) < s3 (09:45Z); as text they sort otherwise.
DATASET = {
    "s1": dict(
        identifier="Alpha run",
        state="closed",
        timestamp="2024-03-01T10:00:00+01:00",
        type="Race",
        quality=0.9,
        group="G1",
        version="1.10.0",
        details={"Driver": "Ann", "Lap": 2, "Fuel": 10.5, "Wet": True, "Code": "2"},
        ext_details={"CarSetup": {"RideHeight": 30, "Wing": "high"}},
        time_range=(1_000, 5_000),
    ),
    "s2": dict(
        identifier="Beta",
        state="open",
        timestamp="2024-03-01T09:30:00Z",
        type="Practice",
        quality=0.5,
        group="G2",
        version="1.9.0",
        details={"Driver": "bob", "Lap": 10, "Fuel": 2, "Wet": False, "Code": 2},
        ext_details={"CarSetup": {"RideHeight": 25}, "Weather": {"Temp": 21}},
        time_range=(2_000, 9_000),
    ),
    "s3": dict(
        identifier="alpha two",
        state="failed",
        timestamp="2024-03-01T08:45:00-01:00",
        details={"Driver": "Carl", "Lap": 100},
    ),
    "s4": dict(
        identifier="Gamma",
        state="abandoned",
        timestamp="2024-02-28T23:00:00Z",
        type="Race",
        quality=0.0,
        group="G1",
    ),
}
ALL = ["s1", "s2", "s3", "s4"]


@pytest.fixture
def dataset(db):
    for identity, fields in DATASET.items():
        make_session(identity, **fields)


def matching(query):
    """Identities matching ``query`` (a criteria object), in identity order."""
    return [s.identity for s in list_sessions(query=query, sorts=["identity:asc"])]


def ordered(*sorts, **kwargs):
    return [s.identity for s in list_sessions(sorts=list(sorts), **kwargs)]


# --- operators on core properties ------------------------------------------------------------

CORE_CASES = [
    ({"identifier": "Beta"}, ["s2"]),
    ({"identifier": {"$eq": "Beta"}}, ["s2"]),
    ({"identifier": {"$neq": "Beta"}}, ["s1", "s3", "s4"]),
    # Ordinal: lower case sorts after every upper case letter.
    ({"identifier": {"$gt": "B"}}, ["s2", "s3", "s4"]),
    ({"identifier": {"$gte": "Beta"}}, ["s2", "s3", "s4"]),
    ({"identifier": {"$lt": "Beta"}}, ["s1"]),
    ({"identifier": {"$lte": "Beta"}}, ["s1", "s2"]),
    ({"identifier": {"$startsWith": "Alpha"}}, ["s1"]),
    ({"identifier": {"$startsWith": "alpha"}}, ["s3"]),
    ({"identifier": {"$endsWith": "a"}}, ["s2", "s4"]),
    ({"identifier": {"$contains": "pha"}}, ["s1", "s3"]),
    ({"identifier": {"$contains": "PHA"}}, []),
    ({"identifier": {"$contains": "%"}}, []),
    ({"identifier": {"$in": ["Beta", "Gamma", "nope"]}}, ["s2", "s4"]),
    ({"identifier": {"$nin": ["Beta", "Gamma"]}}, ["s1", "s3"]),
    ({"identifier": {"$not": {"$startsWith": "Alpha"}}}, ["s2", "s3", "s4"]),
    ({"identity": "s3"}, ["s3"]),
    # state by name, compared by state number (open 2 < closed 4 < truncated 12 < failed 28 < abandoned 44).
    ({"state": "open"}, ["s2"]),
    ({"state": {"$neq": "closed"}}, ["s2", "s3", "s4"]),
    ({"state": {"$in": ["closed", "failed"]}}, ["s1", "s3"]),
    ({"state": {"$nin": ["open"]}}, ["s1", "s3", "s4"]),
    ({"state": {"$gte": "closed"}}, ["s1", "s3", "s4"]),
    ({"state": {"$gt": "failed"}}, ["s4"]),
    ({"state": {"$lt": "closed"}}, ["s2"]),
    ({"state": {"$lte": "truncated"}}, ["s1", "s2"]),
    ({"state": 4}, ["s1"]),
    # timestamp as instants, whatever the zone offset of operand or stored text.
    ({"timestamp": "2024-03-01T09:00:00Z"}, ["s1"]),
    ({"timestamp": {"$eq": "2024-03-01T11:00:00+02:00"}}, ["s1"]),
    ({"timestamp": {"$eq": "2024-03-01T10:00:00+01:00"}}, ["s1"]),
    ({"timestamp": {"$neq": "2024-03-01T09:45:00Z"}}, ["s1", "s2", "s4"]),
    ({"timestamp": {"$gt": "2024-03-01T09:40:00Z"}}, ["s3"]),
    ({"timestamp": {"$gt": "2024-03-01T10:30:00+01:00"}}, ["s3"]),
    ({"timestamp": {"$gte": "2024-03-01T10:30:00+01:00"}}, ["s2", "s3"]),
    ({"timestamp": {"$lt": "2024-03-01T09:00:00Z"}}, ["s4"]),
    ({"timestamp": {"$lte": "2024-03-01T09:00:00.000000000+00:00"}}, ["s1", "s4"]),
    ({"timestamp": {"$gt": "2024-03-01T08:59:59.999999999Z"}}, ["s1", "s2", "s3"]),
    ({"timestamp": {"$in": ["2024-03-01T09:45:00Z", "2024-02-29T00:00:00+01:00"]}}, ["s3", "s4"]),
    ({"timestamp": {"$startsWith": "2024-03-01T08"}}, ["s3"]),
    ({"timestamp": {"$gt": "9999-12-31T23:59:59Z"}}, []),
    ({"timestamp": {"$gt": "0001-01-01T00:00:00Z"}}, ALL),
    # quality
    ({"quality": 0.5}, ["s2"]),
    ({"quality": {"$gt": 0.4}}, ["s1", "s2"]),
    ({"quality": {"$gte": 0.5}}, ["s1", "s2"]),
    ({"quality": {"$lt": 0.6}}, ["s2", "s4"]),
    ({"quality": {"$lte": 0}}, ["s4"]),
    ({"quality": {"$eq": None}}, ["s3"]),
    ({"quality": {"$neq": None}}, ["s1", "s2", "s4"]),
    ({"quality": {"$not": {"$gt": 0.4}}}, ["s3", "s4"]),
    ({"quality": {"$nin": [0.9]}}, ["s2", "s3", "s4"]),
    ({"quality": {"$in": [0, 1]}}, ["s4"]),
    ({"quality": {"$gt": 12345678901234567890123}}, []),
    # type, group, version: absent values match negations only
    ({"type": "Race"}, ["s1", "s4"]),
    ({"type": {"$neq": "Race"}}, ["s2", "s3"]),
    ({"type": {"$nin": ["Race"]}}, ["s2", "s3"]),
    ({"type": None}, ["s3"]),
    ({"type": {"$startsWith": "P"}}, ["s2"]),
    ({"type": {"$lt": "Z"}}, ["s1", "s2", "s4"]),
    ({"group": {"$in": ["G1"]}}, ["s1", "s4"]),
    ({"group": {"$neq": "G1"}}, ["s2", "s3"]),
    ({"version": {"$lt": "1.9"}}, ["s1"]),
    ({"version": {"$gt": "1.9"}}, ["s2"]),
    ({"version": {"$endsWith": ".0"}}, ["s1", "s2"]),
    # the time range, as instants and as nanoseconds
    ({"startTimestamp": {"$gte": "1970-01-01T00:00:00.0000015Z"}}, ["s2"]),
    ({"startTimestamp": None}, ["s3", "s4"]),
    ({"startTimestamp": {"$neq": None}}, ["s1", "s2"]),
    ({"endTimestamp": {"$lt": "1970-01-01T01:00:00.000006+01:00"}}, ["s1"]),
    ({"timeRange.startTime": {"$gt": 1000}}, ["s2"]),
    ({"timeRange.endTime": {"$lte": 9000}}, ["s1", "s2"]),
    ({"timeRange.startTime": {"$gt": 12345678901234567890123}}, []),
]


@pytest.mark.parametrize("query,expected", CORE_CASES, ids=[json.dumps(q) for q, _ in CORE_CASES])
def test_core_property_operators(dataset, query, expected):
    assert matching(query) == expected


# --- operators on details and extDetails (typed) ----------------------------------------------

DETAIL_CASES = [
    ({"details.Driver": "Ann"}, ["s1"]),
    ({"details.Driver": {"$gt": "Ann"}}, ["s2", "s3"]),
    ({"details.Driver": {"$lt": "C"}}, ["s1"]),
    ({"details.Driver": {"$gte": "Carl"}}, ["s2", "s3"]),
    ({"details.Driver": {"$lte": "Carl"}}, ["s1", "s3"]),
    ({"details.Driver": {"$startsWith": "b"}}, ["s2"]),
    ({"details.Driver": {"$endsWith": "rl"}}, ["s3"]),
    ({"details.Driver": {"$contains": "n"}}, ["s1"]),
    ({"details.Driver": {"$contains": "N"}}, []),
    ({"details.Driver": {"$contains": ""}}, ["s1", "s2", "s3"]),
    ({"details.Driver": {"$in": ["Ann", "bob"]}}, ["s1", "s2"]),
    ({"details.Driver": {"$not": {"$startsWith": "A"}}}, ["s2", "s3", "s4"]),
    # numbers compare numerically: 2 < 10 < 100
    ({"details.Lap": 100}, ["s3"]),
    ({"details.Lap": {"$gt": 5}}, ["s2", "s3"]),
    ({"details.Lap": {"$gte": 10}}, ["s2", "s3"]),
    ({"details.Lap": {"$lt": 10}}, ["s1"]),
    ({"details.Lap": {"$lte": 10}}, ["s1", "s2"]),
    ({"details.Lap": {"$eq": 10.0}}, ["s2"]),
    ({"details.Lap": {"$gt": 12345678901234567890123}}, []),
    ({"details.Lap": {"$lt": 1e308}}, ["s1", "s2", "s3"]),
    ({"details.Lap": {"$nin": [2, 100]}}, ["s2", "s4"]),
    ({"details.Lap": {"$not": {"$gt": 5}}}, ["s1", "s4"]),
    ({"details.Lap": {"$not": {"$not": {"$eq": 2}}}}, ["s1"]),
    ({"details.Fuel": {"$gt": 2.5}}, ["s1"]),
    ({"details.Fuel": {"$lt": 10.5}}, ["s2"]),
    ({"details.Fuel": 10.5}, ["s1"]),
    ({"details.Fuel": 2.0}, ["s2"]),
    # a number operand never matches a string value, nor a string operand a number
    ({"details.Lap": {"$gt": "5"}}, []),
    ({"details.Lap": {"$startsWith": "1"}}, []),
    ({"details.Code": 2}, ["s2"]),
    ({"details.Code": "2"}, ["s1"]),
    ({"details.Code": {"$gte": 0}}, ["s2"]),
    ({"details.Code": {"$gte": ""}}, ["s1"]),
    ({"details.Code": {"$in": [2]}}, ["s2"]),
    ({"details.Code": {"$neq": 2}}, ["s1", "s3", "s4"]),
    # booleans: false < true; neither equals a number
    ({"details.Wet": True}, ["s1"]),
    ({"details.Wet": False}, ["s2"]),
    ({"details.Wet": {"$neq": True}}, ["s2", "s3", "s4"]),
    ({"details.Wet": {"$gt": False}}, ["s1"]),
    ({"details.Wet": {"$lt": True}}, ["s2"]),
    ({"details.Wet": {"$gte": False}}, ["s1", "s2"]),
    ({"details.Wet": {"$eq": 1}}, []),
    ({"details.Wet": {"$eq": 0}}, []),
    ({"details.Wet": {"$in": [True, False]}}, ["s1", "s2"]),
    ({"details.Lap": True}, []),
    # null: $eq null is absent, $neq null is present
    ({"details.Lap": None}, ["s4"]),
    ({"details.Lap": {"$eq": None}}, ["s4"]),
    ({"details.Lap": {"$neq": None}}, ["s1", "s2", "s3"]),
    ({"details.Lap": {"$not": {"$eq": None}}}, ["s1", "s2", "s3"]),
    ({"details.Lap": {"$in": [None, 2]}}, ["s1", "s4"]),
    ({"details.Lap": {"$nin": [None, 2]}}, ["s2", "s3"]),
    ({"details.Nope": {"$neq": 1}}, ALL),
    ({"details.Nope": None}, ALL),
    ({"details.RideHeight": None}, ALL),
    # extDetails.Group.Key
    ({"extDetails.CarSetup.RideHeight": 25}, ["s2"]),
    ({"extDetails.CarSetup.RideHeight": {"$gte": 26}}, ["s1"]),
    ({"extDetails.CarSetup.RideHeight": {"$lt": 100}}, ["s1", "s2"]),
    ({"extDetails.CarSetup.RideHeight": None}, ["s3", "s4"]),
    ({"extDetails.CarSetup.RideHeight": {"$neq": None}}, ["s1", "s2"]),
    ({"extDetails.CarSetup.Wing": {"$startsWith": "hi"}}, ["s1"]),
    ({"extDetails.CarSetup.Wing": {"$neq": "high"}}, ["s2", "s3", "s4"]),
    ({"extDetails.Weather.Temp": {"$in": [20, 21]}}, ["s2"]),
    ({"extDetails.Weather.RideHeight": None}, ALL),
]


@pytest.mark.parametrize("query,expected", DETAIL_CASES, ids=[json.dumps(q) for q, _ in DETAIL_CASES])
def test_detail_operators(dataset, query, expected):
    assert matching(query) == expected


LOGICAL_CASES = [
    ({}, ALL),
    ({"type": "Race", "group": "G1"}, ["s1", "s4"]),
    ({"type": "Race", "details.Wet": True}, ["s1"]),
    ({"$and": [{"type": "Race"}, {"quality": {"$gt": 0.5}}]}, ["s1"]),
    ({"$and": [{}]}, ALL),
    ({"$or": [{"state": "open"}, {"details.Lap": 100}]}, ["s2", "s3"]),
    ({"$or": [{"type": "Nope"}]}, []),
    ({"$nor": [{"type": "Race"}]}, ["s2", "s3"]),
    ({"$nor": [{"type": "Race"}, {"state": "open"}]}, ["s3"]),
    ({"$nor": [{"details.Lap": {"$gt": 5}}]}, ["s1", "s4"]),
    (
        {
            "$or": [
                {"$and": [{"type": "Race"}, {"details.Wet": True}]},
                {"$nor": [{"details.Lap": {"$neq": None}}]},
            ]
        },
        ["s1", "s4"],
    ),
    ({"$and": [{"$or": [{"group": "G1"}, {"group": "G2"}]}, {"$nor": [{"state": "abandoned"}]}]}, ["s1", "s2"]),
]


@pytest.mark.parametrize("query,expected", LOGICAL_CASES, ids=[json.dumps(q) for q, _ in LOGICAL_CASES])
def test_logical_operators(dataset, query, expected):
    assert matching(query) == expected


def test_query_text_is_parsed_before_compiling(dataset):
    assert matching(parse_query('{"details.Lap": {"$gt": 5}}')) == ["s2", "s3"]
    assert parse_query("") is None and parse_query("   ") is None
    assert matching(parse_query("")) == ALL


def test_compiled_sql_keeps_operands_as_parameters():
    sql, params = compile_query({"identifier": "x'; DROP TABLE sessions_app_session; --"})
    assert "DROP" not in sql
    assert params == ["x'; DROP TABLE sessions_app_session; --"]


def test_nested_sessions_within_depth_limit_compile(dataset):
    query = {"type": "Race"}
    for _ in range(20):
        query = {"$and": [query]}
    assert matching(query) == ["s1", "s4"]


# --- invalid queries: InvalidArgument naming the offending part --------------------------------


def _deep(levels):
    query = {"type": "Race"}
    for _ in range(levels):
        query = {"$and": [query]}
    return query


def _deep_not(levels):
    condition = {"$eq": "Race"}
    for _ in range(levels):
        condition = {"$not": condition}
    return {"type": condition}


BAD_QUERIES = [
    ('{"type": {"$like": "x"}}', "type.$like"),
    ('{"details.Lap": {"$gt": 1, "$lt": 5}}', "details.Lap"),
    ('{"details.Driver": {"$contains": 5}}', "details.Driver.$contains"),
    ('{"identifier": {"$startsWith": null}}', "identifier.$startsWith"),
    ('{"details.Driver": {"$endsWith": ["a"]}}', "details.Driver.$endsWith"),
    ('{"type": {"$in": "Race"}}', "type.$in"),
    ('{"type": {"$nin": {"a": 1}}}', "type.$nin"),
    ('{"quality": "high"}', "quality"),
    ('{"quality": {"$gt": true}}', "quality.$gt"),
    ('{"state": "running"}', "running"),
    ('{"state": {"$in": ["open", "running"]}}', "state.$in[1]"),
    ('{"state": 2.5}', "state"),
    ('{"timestamp": {"$gt": "yesterday"}}', "timestamp.$gt"),
    ('{"timestamp": "2024-13-01T00:00:00Z"}', "timestamp"),
    ('{"timestamp": "2024-03-01T10:00:00+25:00"}', "timestamp"),
    ('{"timestamp": 1234}', "timestamp"),
    ('{"identifier": 5}', "identifier"),
    ('{"nope": 1}', "nope"),
    ('{"details": 1}', "details"),
    ('{"details.": 1}', "details."),
    ('{"extDetails.CarSetup": 1}', "extDetails.CarSetup"),
    ('{"$xor": [{"type": "Race"}]}', "$xor"),
    ('{"$and": {"type": "Race"}}', "$and"),
    ('{"$or": []}', "$or"),
    ('{"$or": [{"type": "Race"}, {"bogus": 1}]}', "$or[1].bogus"),
    ('{"$nor": [{"type": {"$in": 3}}]}', "$nor[0].type.$in"),
    ('{"$and": [5]}', "$and[0]"),
    ('{"type": {}}', "type"),
    ('{"type": {"$not": "Race"}}', "type.$not"),
    ('{"type": {"$not": {"$regex": "R"}}}', "$regex"),
    ('{"details.Lap": {"$gt": null}}', "details.Lap.$gt"),
    ('{"details.Lap": {"$eq": [1]}}', "details.Lap.$eq"),
    ('{"details.Lap": [1]}', "details.Lap"),
    ('{"details.Lap": {"$in": [1, {"a": 2}]}}', "details.Lap.$in[1]"),
    ('{"details.Lap": {"$eq": NaN}}', "details.Lap.$eq"),
    ('{"details.Lap": Infinity}', "details.Lap"),
    ('{"startTimestamp": {"$contains": "2024"}}', "startTimestamp.$contains"),
    ('{"quality": {"$startsWith": "0"}}', "quality.$startsWith"),
    ('{"identifier": "a\\u0000b"}', "identifier"),
    ('{"details.Driver": {"$startsWith": "\\u0000"}}', "details.Driver.$startsWith"),
    ('{"details.a\\u0000b": 1}', "details.a"),
    ("[1, 2]", "query"),
    ('"Race"', "query"),
    ('{"type": ', "JSON"),
    ("{'type': 'Race'}", "JSON"),
    (json.dumps(_deep(40)), "deeper"),
    (json.dumps(_deep_not(40)), "deeper"),
    ("[" * 100_000 + "]" * 100_000, "query"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "query"),
]


@pytest.mark.parametrize("text,fragment", BAD_QUERIES, ids=[t[:60] for t, _ in BAD_QUERIES])
def test_invalid_queries_name_the_offending_part(dataset, text, fragment):
    with pytest.raises(InvalidArgument) as exc:
        list_sessions(query=parse_query(text))
    assert fragment in exc.value.message


# --- typed sorts ------------------------------------------------------------------------------


def test_default_sort_is_timestamp_descending_by_instant(dataset):
    # As text the order would be s1 (10:00+01:00), s2, s3 (08:45-01:00), s4.
    assert ordered() == ["s3", "s2", "s1", "s4"]
    assert ordered("timestamp:desc") == ["s3", "s2", "s1", "s4"]
    assert ordered("timestamp:asc") == ["s4", "s1", "s2", "s3"]
    assert ordered("timestamp") == ["s4", "s1", "s2", "s3"]


SORT_CASES = [
    # numbers numerically (2 < 10 < 100), absent last in both directions
    (["details.Lap:asc"], ["s1", "s2", "s3", "s4"]),
    (["details.Lap:desc"], ["s3", "s2", "s1", "s4"]),
    (["details.Lap"], ["s1", "s2", "s3", "s4"]),
    (["details.Lap:DESC"], ["s3", "s2", "s1", "s4"]),
    (["details.Fuel:asc"], ["s2", "s1", "s3", "s4"]),
    # strings ordinally
    (["details.Driver:asc"], ["s1", "s3", "s2", "s4"]),
    (["details.Driver:desc"], ["s2", "s3", "s1", "s4"]),
    # booleans: false before true
    (["details.Wet:asc"], ["s2", "s1", "s3", "s4"]),
    (["details.Wet:desc"], ["s1", "s2", "s3", "s4"]),
    # mixed types grouped: numbers, then strings
    (["details.Code:asc"], ["s2", "s1", "s3", "s4"]),
    (["extDetails.CarSetup.RideHeight:asc"], ["s2", "s1", "s3", "s4"]),
    (["extDetails.CarSetup.RideHeight:desc"], ["s1", "s2", "s3", "s4"]),
    # core properties
    (["identifier:asc"], ["s1", "s2", "s4", "s3"]),
    (["identifier:desc"], ["s3", "s4", "s2", "s1"]),
    (["quality:desc"], ["s1", "s2", "s4", "s3"]),
    (["quality:asc"], ["s4", "s2", "s1", "s3"]),
    (["state:asc"], ["s2", "s1", "s3", "s4"]),
    (["state:desc"], ["s4", "s3", "s1", "s2"]),
    (["version:asc"], ["s1", "s2", "s3", "s4"]),
    (["startTimestamp:desc"], ["s2", "s1", "s3", "s4"]),
    (["endTimestamp:asc"], ["s1", "s2", "s3", "s4"]),
    # several keys, highest priority first
    (["type:asc", "timestamp:desc"], ["s2", "s1", "s4", "s3"]),
    (["type:asc", "timestamp:asc"], ["s2", "s4", "s1", "s3"]),
    (["group:asc", "details.Lap:desc"], ["s1", "s4", "s2", "s3"]),
    (["group:desc", "details.Lap:asc"], ["s2", "s1", "s4", "s3"]),
    # unknown or unusable keys are ignored
    (["bogus:asc"], ["s3", "s2", "s1", "s4"]),
    (["timestamp:sideways"], ["s3", "s2", "s1", "s4"]),
    (["details.:asc"], ["s3", "s2", "s1", "s4"]),
    (["", "bogus", "details.Lap:asc"], ["s1", "s2", "s3", "s4"]),
    (["bogus:desc", "type:desc", "identity:desc"], ["s4", "s1", "s2", "s3"]),
]


@pytest.mark.parametrize("sorts,expected", SORT_CASES, ids=[",".join(s) for s, _ in SORT_CASES])
def test_typed_sorts(dataset, sorts, expected):
    assert ordered(*sorts) == expected


def test_mixed_detail_types_sort_grouped_by_type(db):
    for identity, value in (("m1", 10), ("m2", 9), ("m3", "abc"), ("m4", "B"), ("m5", True), ("m6", False)):
        make_session(identity, details={"Mixed": value})
    make_session("m7")
    assert ordered("details.Mixed:asc") == ["m2", "m1", "m4", "m3", "m6", "m5", "m7"]
    assert ordered("details.Mixed:desc") == ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]


def test_sort_and_query_combine(dataset):
    assert [s.identity for s in list_sessions(query={"type": {"$neq": None}}, sorts=["details.Lap:desc"])] == [
        "s2",
        "s1",
        "s4",
    ]


# --- paging ------------------------------------------------------------------------------------


def test_pages_partition_the_sorted_listing(dataset):
    pages = [ordered(page_index=i, page_size=2) for i in range(3)]
    assert pages == [["s3", "s2"], ["s1", "s4"], []]
    assert ordered(page_size=3, page_index=1, **{}) == ["s4"]
    assert ordered(page_size=0) == []
    assert ordered(page_index=None, page_size=None) == ["s3", "s2", "s1", "s4"]


def test_paging_is_stable_when_sort_keys_tie(db):
    identities = [f"tie-{i:02d}" for i in range(11)]
    for identity in reversed(identities):
        make_session(identity, timestamp="2024-05-05T12:00:00Z", details={"Same": 1})
    for sorts in ((), ("details.Same:desc",), ("timestamp:asc", "details.Same:asc")):
        pages = [ordered(*sorts, page_index=i, page_size=4) for i in range(4)]
        assert [len(p) for p in pages] == [4, 4, 3, 0]
        assert sum(pages, []) == identities


def test_page_far_beyond_the_end_is_empty(dataset):
    assert ordered(page_index=10**17, page_size=1000) == []
    assert ordered(page_index=10**30, page_size=10) == []


@pytest.mark.parametrize(
    "page_index,page_size,fragment",
    [
        (-1, None, "pageIndex"),
        (0, -5, "pageSize"),
        (1.5, None, "pageIndex"),
        ("1", None, "pageIndex"),
        (True, None, "pageIndex"),
        (0, 10**9, "pageSize"),
    ],
)
def test_invalid_paging_is_rejected(dataset, page_index, page_size, fragment):
    with pytest.raises(InvalidArgument) as exc:
        list_sessions(page_index=page_index, page_size=page_size)
    assert fragment in exc.value.message


def test_non_ascii_text_matches_count_characters_and_compare_by_code_point(db):
    make_session("u1", identifier="Zoë 🏎", details={"Driver": "Émile", "Team": "Zoë 🏎"})
    make_session("u2", identifier="Zed", details={"Driver": "Zed", "Team": "Zed"})
    make_session("u3", identifier="zoo", details={"Driver": "émile", "Team": "zoo"})
    for prop in ("identifier", "details.Team"):
        assert matching({prop: {"$endsWith": "🏎"}}) == ["u1"]
        assert matching({prop: {"$endsWith": "ë 🏎"}}) == ["u1"]
        assert matching({prop: {"$startsWith": "Zoë"}}) == ["u1"]
        assert matching({prop: {"$contains": "ë"}}) == ["u1"]
        assert matching({prop: {"$endsWith": "Zoë 🏎!"}}) == []
    # Code point order: "Z" < "z" < "É" < "é".
    assert matching({"details.Driver": {"$gt": "z"}}) == ["u1", "u3"]
    assert matching({"details.Driver": {"$lt": "É"}}) == ["u2"]
    assert ordered("details.Driver:asc") == ["u2", "u1", "u3"]
    assert ordered("identifier:desc") == ["u3", "u1", "u2"]
