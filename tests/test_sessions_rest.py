"""The Session Service over REST (spec §2, §3, §5, §6): listing, querying, session JSON, metamodel."""

import json
from urllib.parse import urlencode

import pytest

from sessions_app.services.folders import put_folder
from tests.factories import make_session

SESSIONS = "/rta/v2/sessions"
FORM = "application/x-www-form-urlencoded"


def post_form(client, fields):
    """POST /sessions form-encoded, repeated fields given as lists."""
    return client.post(SESSIONS, urlencode(fields, doseq=True), content_type=FORM)


def identities(response):
    assert response.status_code == 200, response.content
    return [s["identity"] for s in response.json()["sessions"]]


@pytest.fixture
def trio(db):
    make_session("a", timestamp="2024-03-01T10:00:00+01:00", type="Race", details={"Lap": 2, "Driver": "Ann"})
    make_session("b", timestamp="2024-03-01T09:30:00Z", type="Practice", details={"Lap": 10, "Driver": "bob"})
    make_session("c", timestamp="2024-03-01T08:45:00-01:00", details={"Lap": 100, "Driver": "Carl"})


# --- listing, querying, sorting and paging over REST -------------------------------------------


@pytest.mark.embedded
def test_get_lists_sessions_most_recent_instant_first(api, trio):
    response = api.get(SESSIONS)
    assert response["Content-Type"].startswith("application/json")
    assert identities(response) == ["c", "b", "a"]


@pytest.mark.embedded
def test_post_form_queries_sorts_and_pages(api, trio):
    assert identities(post_form(api, {"query": json.dumps({"details.Lap": {"$gt": 5}})})) == ["c", "b"]
    assert identities(post_form(api, {"query": '{"details.Lap": {"$gte": 2}}', "sort": "details.Lap:asc"})) == [
        "a",
        "b",
        "c",
    ]
    assert identities(post_form(api, {"sort": ["type:asc", "timestamp:asc"]})) == ["b", "a", "c"]
    assert identities(post_form(api, {"sort": "details.Lap:desc", "pageIndex": "1", "pageSize": "2"})) == ["a"]
    assert identities(post_form(api, {"query": ""})) == ["c", "b", "a"]


@pytest.mark.embedded
def test_get_takes_repeated_sort_keys_and_ignores_unknown_ones(api, trio):
    assert identities(api.get(SESSIONS, {"sort": ["bogus:asc", "details.Lap:asc"]})) == ["a", "b", "c"]
    assert identities(api.get(SESSIONS, {"sort": "details.Driver:asc"})) == ["a", "c", "b"]
    assert identities(api.get(SESSIONS, {"sort": "nope:desc"})) == ["c", "b", "a"]
    assert identities(api.get(SESSIONS, {"sort": "identifier:upwards"})) == ["c", "b", "a"]


@pytest.mark.embedded
def test_paging_over_rest_is_consistent(api, db):
    for i in range(7):
        make_session(f"p{i}", timestamp=f"2024-01-0{i + 1}T00:00:00Z")
    everything = identities(api.get(SESSIONS))
    assert everything == [f"p{i}" for i in reversed(range(7))]
    pages = [identities(api.get(SESSIONS, {"pageIndex": i, "pageSize": 3})) for i in range(4)]
    assert pages == [everything[0:3], everything[3:6], everything[6:], []]
    assert identities(api.get(SESSIONS, {"pageSize": 0})) == []
    assert identities(api.get(SESSIONS, {"pageIndex": 10**30, "pageSize": 10})) == []


@pytest.mark.embedded
def test_json_body_is_read_like_form_fields(api, trio):
    response = api.post(
        SESSIONS,
        {"query": '{"details.Lap": {"$lt": 50}}', "sort": "details.Lap:desc", "pageSize": 5},
        content_type="application/json",
    )
    assert identities(response) == ["b", "a"]
    response = api.post(SESSIONS, {"pageIndex": 1.5}, content_type="application/json")
    assert response.status_code == 400 and "pageIndex" in response.json()["error"]
    response = api.post(SESSIONS, [1, 2], content_type="application/json")
    assert response.status_code == 400
    response = api.post(SESSIONS, {"folder": 5}, content_type="application/json")
    assert response.status_code == 400 and "folder" in response.json()["error"]
    response = api.post(SESSIONS, "{not json", content_type="application/json")
    assert response.status_code == 400 and "error" in response.json()


BAD_REQUESTS = [
    ({"query": '{"type": '}, "JSON"),
    ({"query": '{"type": {"$like": "R"}}'}, "$like"),
    ({"query": '{"details.Lap": {"$gt": 1, "$lt": 9}}'}, "details.Lap"),
    ({"query": '{"details.Driver": {"$contains": 5}}'}, "details.Driver.$contains"),
    ({"query": '{"type": {"$in": "Race"}}'}, "type.$in"),
    ({"query": '{"quality": "good"}'}, "quality"),
    ({"query": '{"state": "sleeping"}'}, "sleeping"),
    ({"query": '{"timestamp": {"$gt": "2024-02-30T00:00:00Z"}}'}, "timestamp.$gt"),
    ({"query": '{"timestamp": {"$lt": "not a date"}}'}, "timestamp.$lt"),
    ({"query": '{"colour": "red"}'}, "colour"),
    ({"query": '{"$or": [{"type": "Race"}, {"$nor": {"type": "x"}}]}'}, "$or[1].$nor"),
    ({"query": '{"identifier": "\\u0000"}'}, "identifier"),
    ({"query": "[" * 50_000 + "]" * 50_000}, "query"),
    ({"query": '{"type": ' + '{"$not": ' * 40 + '{"$eq": "x"}' + "}" * 41}, "deeper"),
    ({"pageIndex": "-1"}, "pageIndex"),
    ({"pageIndex": "abc"}, "pageIndex"),
    ({"pageIndex": "1.5"}, "pageIndex"),
    ({"pageSize": "-3"}, "pageSize"),
    ({"pageSize": "ten"}, "pageSize"),
    ({"pageSize": "100000000"}, "pageSize"),
]


@pytest.mark.embedded
@pytest.mark.parametrize("fields,fragment", BAD_REQUESTS, ids=[str(f)[:50] for f, _ in BAD_REQUESTS])
def test_bad_input_is_a_400_naming_the_offending_part(api, trio, fields, fragment):
    for response in (post_form(api, fields), api.get(SESSIONS, fields)):
        assert response.status_code == 400, response.content
        assert response["Content-Type"].startswith("application/json")
        assert fragment in response.json()["error"]


@pytest.mark.embedded
def test_deeply_nested_logical_query_is_a_400(api, trio):
    query = {"type": "Race"}
    for _ in range(200):
        query = {"$or": [query]}
    response = post_form(api, {"query": json.dumps(query)})
    assert response.status_code == 400
    assert "deeper" in response.json()["error"]


# --- one session and its JSON ------------------------------------------------------------------

START = 1_709_283_600_000_000_000  # 2024-03-01T09:00:00Z


@pytest.fixture
def full(db):
    return make_session(
        "full-1",
        timestamp="2024-03-01T10:00:00.5+01:00",
        state="open",
        identifier="Full run",
        details={"Driver": "Ann", "lap_count": 3, "Wet": False, "Fuel": 1.5},
        ext_details={"CarSetup": {"RideHeight": 30, "Wing": "high"}, "Weather": {"Temp": 21}},
        type="Race",
        quality=0.0,
        group="Team",
        version="1.2.3",
        time_range=(START, START + 60_500_000_000),
        markers=[
            {
                "id": "lap-1",
                "category": "Laps",
                "type": "fastLap",
                "label": "Lap 1",
                "description": "first",
                "start_time": START,
                "end_time": START + 1_000,
                "details": {"n": 1},
            },
            {"id": "note", "label": "Note", "start_time": START + 5},
        ],
        config_bindings=[{"identifier": "cfg-1"}, {"identifier": "cfg-2", "channel_offset": 100}],
    )


@pytest.mark.embedded
def test_full_session_json_is_camel_case(api, full):
    body = api.get(f"{SESSIONS}/full-1").json()
    markers = sorted(body.pop("markers"), key=lambda m: m["id"])
    assert body == {
        "identity": "full-1",
        "state": "open",
        "timestamp": "2024-03-01T10:00:00.5+01:00",
        "identifier": "Full run",
        "startTimestamp": "2024-03-01T10:00:00+01:00",
        "endTimestamp": "2024-03-01T10:01:00.5+01:00",
        "timeRange": {"startTime": START, "endTime": START + 60_500_000_000},
        "details": {"Driver": "Ann", "lap_count": 3, "Wet": False, "Fuel": 1.5},
        "type": "Race",
        "quality": 0.0,
        "group": "Team",
        "version": "1.2.3",
        "configBindings": [{"identifier": "cfg-1", "channelOffset": 0}, {"identifier": "cfg-2", "channelOffset": 100}],
    }
    assert markers == [
        {
            "id": "lap-1",
            "category": "Laps",
            "type": "fastLap",
            "label": "Lap 1",
            "description": "first",
            "startTime": START,
            "endTime": START + 1_000,
            "details": {"n": 1},
        },
        {"id": "note", "label": "Note", "startTime": START + 5},
    ]
    listed = api.get(SESSIONS).json()["sessions"]
    assert [s["identity"] for s in listed] == ["full-1"]
    assert sorted(listed[0]["markers"], key=lambda m: m["id"]) == markers
    assert "extDetails" not in listed[0]


@pytest.mark.embedded
def test_minimal_session_omits_empty_and_null_properties(api, db):
    make_session("bare", timestamp="2024-01-02T03:04:05Z")
    body = api.get(f"{SESSIONS}/bare").json()
    assert body == {
        "identity": "bare",
        "state": "closed",
        "timestamp": "2024-01-02T03:04:05+00:00",
        "identifier": "bare",
    }
    assert api.get(SESSIONS).json() == {"sessions": [body]}


@pytest.mark.embedded
def test_start_and_end_timestamps_only_with_a_time_range(api, db):
    make_session("ranged", timestamp="2024-01-01T00:00:00-05:00", time_range=(START, START))
    make_session("unranged", timestamp="2024-01-01T00:00:00-05:00")
    ranged = api.get(f"{SESSIONS}/ranged").json()
    assert ranged["startTimestamp"] == ranged["endTimestamp"] == "2024-03-01T04:00:00-05:00"
    unranged = api.get(f"{SESSIONS}/unranged").json()
    assert not {"startTimestamp", "endTimestamp", "timeRange"} & set(unranged)


@pytest.mark.embedded
@pytest.mark.parametrize(
    "props,expected",
    [
        ([], None),
        (["details.Driver"], None),
        (["extDetails"], {"CarSetup": {"RideHeight": 30, "Wing": "high"}, "Weather": {"Temp": 21}}),
        (["extDetails.CarSetup"], {"CarSetup": {"RideHeight": 30, "Wing": "high"}}),
        (["extDetails.CarSetup.Wing"], {"CarSetup": {"Wing": "high"}}),
        (
            ["extDetails.CarSetup.Wing", "extDetails.Weather.Temp"],
            {"CarSetup": {"Wing": "high"}, "Weather": {"Temp": 21}},
        ),
        (["extDetails.CarSetup.Nope"], None),
        (["extDetails.Nope"], None),
    ],
)
def test_ext_details_only_when_asked_for_with_prop(api, full, props, expected):
    one = api.get(f"{SESSIONS}/full-1", {"prop": props}).json()
    listed = post_form(api, {"prop": props}).json()["sessions"][0]
    fetched = api.get(SESSIONS, {"prop": props}).json()["sessions"][0]
    for body in (one, listed, fetched):
        assert body.get("extDetails") == expected
        assert body["details"]["Driver"] == "Ann"


@pytest.mark.embedded
def test_missing_session_is_a_404_with_a_json_error(api, db):
    response = api.get(f"{SESSIONS}/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]
    assert api.get(f"{SESSIONS}/a%00b").status_code == 404


@pytest.mark.embedded
def test_identity_is_not_re_cased_nor_details_keys(api, db):
    make_session("Mixed-Case_ID", details={"snake_key": 1, "UPPER": "X", "camelKey": True})
    body = api.get(f"{SESSIONS}/Mixed-Case_ID").json()
    assert body["identity"] == "Mixed-Case_ID"
    assert body["details"] == {"snake_key": 1, "UPPER": "X", "camelKey": True}


# --- relationships from anchors, in either order of arrival -------------------------------------


def _make_parent():
    make_session(
        "parent",
        timestamp="2024-03-01T00:00:00Z",
        anchors=["guid:8319B646-AAAA", "acq:engine-5/2024-03-01T00:00:00+0000"],
    )


def _make_child():
    make_session("child", timestamp="2024-03-01T01:00:00Z", child_of=["guid:8319B646-AAAA"])


def _make_alternate():
    make_session("alt", timestamp="2024-03-01T02:00:00Z", alternate_of=["acq:engine-5/2024-03-01T00:00:00+0000"])


@pytest.mark.embedded
@pytest.mark.parametrize("order", ["parent-first", "children-first"])
def test_children_and_alternates_resolve_in_either_order(api, db, order):
    make_session("other", timestamp="2024-02-01T00:00:00Z", child_of=["guid:nobody-publishes-this"])
    if order == "parent-first":
        _make_parent()
        _make_child()
        _make_alternate()
    else:
        _make_child()
        _make_alternate()
        # Until the anchoring session arrives, the sub-sessions are top-level sessions.
        assert identities(api.get(SESSIONS)) == ["alt", "child", "other"]
        _make_parent()
    assert identities(api.get(SESSIONS)) == ["parent", "other"]
    parent = api.get(f"{SESSIONS}/parent").json()
    assert parent["children"] == ["child"]
    assert parent["alternates"] == ["alt"]
    listed = api.get(SESSIONS).json()["sessions"][0]
    assert listed["children"] == ["child"] and listed["alternates"] == ["alt"]
    child = api.get(f"{SESSIONS}/child")
    assert child.status_code == 200
    assert child.json()["identity"] == "child"
    assert "children" not in child.json()
    assert identities(post_form(api, {"query": '{"identity": "child"}'})) == []
    other = api.get(f"{SESSIONS}/other").json()
    assert "children" not in other and "alternates" not in other


@pytest.mark.embedded
def test_several_children_in_timestamp_order_and_removed_refs(api, db):
    _make_parent()
    make_session("late", timestamp="2024-03-01T05:00:00Z", child_of=["guid:8319B646-AAAA"])
    make_session("early", timestamp="2024-03-01T03:00:00Z", child_of=["guid:8319B646-AAAA"])
    assert api.get(f"{SESSIONS}/parent").json()["children"] == ["early", "late"]
    from sessions_app.services.updates import create_or_update_session

    create_or_update_session("late", [("delete_child_of_refs", ["guid:8319B646-AAAA"])])
    assert api.get(f"{SESSIONS}/parent").json()["children"] == ["early"]
    assert identities(api.get(SESSIONS)) == ["late", "parent"]
    create_or_update_session("parent", [("set_ref_anchors", [])])
    assert "children" not in api.get(f"{SESSIONS}/parent").json()
    assert identities(api.get(SESSIONS)) == ["late", "early", "parent"]


@pytest.mark.embedded
def test_a_session_anchoring_itself_stays_top_level(api, db):
    make_session("self", anchors=["guid:self"], child_of=["guid:self"])
    assert identities(api.get(SESSIONS)) == ["self"]
    assert "children" not in api.get(f"{SESSIONS}/self").json()


# --- data bindings (internal) ------------------------------------------------------------------


@pytest.fixture
def bound(db):
    return make_session(
        "bound",
        data_bindings=[
            {
                "source": "kafka",
                "identity": "stream-1",
                "time_ref": 5,
                "session_start_time": 10,
                "session_end_time": 90,
                "session_time_offset": -3,
                "channel_bindings": [
                    {"first_data_channel": 0, "first_session_channel": 100, "last_session_channel": 109}
                ],
            },
            {"identity": "stream-2"},
        ],
    )


@pytest.mark.embedded
def test_data_bindings_are_hidden_unless_exposed(api, bound, settings):
    settings.RTA_EXPOSE_DATA_BINDINGS = False
    response = api.get(f"{SESSIONS}/bound/data-bindings")
    assert response.status_code == 404
    assert "error" in response.json()
    assert "dataBindings" not in api.get(f"{SESSIONS}/bound").json()


@pytest.mark.embedded
def test_data_bindings_are_served_when_exposed(api, bound, settings):
    settings.RTA_EXPOSE_DATA_BINDINGS = True
    response = api.get(f"{SESSIONS}/bound/data-bindings")
    assert response.status_code == 200
    assert response.json() == [
        {
            "key": {"source": "kafka", "identity": "stream-1", "timeRef": 5},
            "sessionTimeOffset": -3,
            "sessionStartTime": 10,
            "sessionEndTime": 90,
            "dataChannelBindings": [{"firstDataChannel": 0, "firstSessionChannel": 100, "lastSessionChannel": 109}],
        },
        {
            "key": {"source": "", "identity": "stream-2", "timeRef": 0},
            "sessionTimeOffset": 0,
            "dataChannelBindings": [],
        },
    ]
    assert api.get(f"{SESSIONS}/nope/data-bindings").status_code == 404


# --- metamodel ----------------------------------------------------------------------------------


@pytest.fixture
def modelled(db):
    put_folder("", "f1", "Folder 1")
    put_folder("f1", "f1a", "Sub-folder")
    make_session(
        "m1",
        folders=["f1"],
        timestamp="2024-03-01T10:00:00+01:00",
        quality=0.2,
        type="Race",
        group="G1",
        version="1.0",
        details={"Driver": "Ann", "Lap": 2, "Fuel": 1.5, "Wet": True, "When": "2024-01-01T00:00:00Z"},
        ext_details={"CarSetup": {"RideHeight": 30}},
        time_range=(START, START + 10),
    )
    make_session(
        "m2",
        folders=["f1a"],
        timestamp="2024-03-02T00:00:00Z",
        quality=0.8,
        type="Practice",
        details={"Driver": "bob", "Lap": 10, "Fuel": 2, "Wet": False, "When": "2024-02-01T00:00:00+01:00"},
        ext_details={"CarSetup": {"RideHeight": 25, "Wing": "low"}, "Weather": {"Temp": 20}},
    )
    make_session("m3", timestamp="2024-01-01T02:00:00+00:00", details={"Driver": "Carl", "Lap": 2, "Mixed": "x"})
    # Earlier as text, later as an instant (03:00Z) than m3.
    make_session("m4", timestamp="2023-12-31T22:00:00-05:00", details={"Mixed": 1})


def _detail(type_, values):
    return {
        "label": None,
        "type": type_,
        "capabilities": {"filter": True, "sort": True},
        "constraints": {"values": values},
    }


def _labelled(descriptors):
    return {key: {**d, "label": key} for key, d in descriptors.items()}


@pytest.mark.embedded
def test_metamodel_aggregates_detail_values_with_types(api, modelled):
    body = api.get("/rta/v2/session-metamodel").json()
    assert body["details"] == _labelled(
        {
            "Driver": _detail("string", ["Ann", "Carl", "bob"]),
            "Fuel": _detail("number", [1.5, 2]),
            "Lap": _detail("integer", [2, 10]),
            "Mixed": _detail("string", [1, "x"]),
            "Wet": _detail("boolean", [False, True]),
            "When": _detail("dateTime", ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00+01:00"]),
        }
    )
    assert body["timestamp"]["constraints"] == {
        "minimum": "2024-01-01T02:00:00+00:00",
        "maximum": "2024-03-02T00:00:00+00:00",
    }
    assert body["timestamp"]["capabilities"] == {"filter": True, "sort": True}
    assert body["state"] == {"filter": True, "sort": True}
    assert body["type"]["constraints"] == {"values": ["Practice", "Race"]}
    assert body["group"]["constraints"] == {"values": ["G1"]}
    assert body["version"]["constraints"] == {"values": ["1.0"]}
    assert body["quality"]["constraints"] == {"minimum": 0.2, "maximum": 0.8}
    assert body["startTimestamp"]["constraints"]["minimum"].startswith("2024-03-01T")
    assert body["extDetails"] == {
        "CarSetup": {"label": "CarSetup", "properties": {}},
        "Weather": {"label": "Weather", "properties": {}},
    }


@pytest.mark.embedded
def test_metamodel_is_scoped_to_a_folder_sub_tree(api, modelled):
    body = api.get("/rta/v2/session-metamodel", {"folder": "f1"}).json()
    assert body["details"] == _labelled(
        {
            "Driver": _detail("string", ["Ann", "bob"]),
            "Fuel": _detail("number", [1.5, 2]),
            "Lap": _detail("integer", [2, 10]),
            "Wet": _detail("boolean", [False, True]),
            "When": _detail("dateTime", ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00+01:00"]),
        }
    )
    assert body["timestamp"]["constraints"] == {
        "minimum": "2024-03-01T10:00:00+01:00",
        "maximum": "2024-03-02T00:00:00+00:00",
    }
    sub = api.get("/rta/v2/session-metamodel", {"folder": "f1a"}).json()
    assert sub["details"]["Driver"]["constraints"] == {"values": ["bob"]}
    assert sub["type"]["constraints"] == {"values": ["Practice"]}
    assert sub["quality"]["constraints"] == {"minimum": 0.8, "maximum": 0.8}
    assert "constraints" not in sub["startTimestamp"]
    nowhere = api.get("/rta/v2/session-metamodel", {"folder": "no-such-folder"})
    assert nowhere.status_code == 200
    assert nowhere.json()["details"] == {} and nowhere.json()["extDetails"] == {}
    assert "constraints" not in nowhere.json()["timestamp"]


@pytest.mark.embedded
def test_metamodel_ext_detail_properties_with_prop(api, modelled):
    body = api.get("/rta/v2/session-metamodel", {"prop": "extDetails.CarSetup"}).json()
    assert body["extDetails"] == {
        "CarSetup": {
            "label": "CarSetup",
            "properties": _labelled({"RideHeight": _detail("integer", [25, 30]), "Wing": _detail("string", ["low"])}),
        },
        "Weather": {"label": "Weather", "properties": {}},
    }
    body = api.get(
        "/rta/v2/session-metamodel", {"prop": ["extDetails.CarSetup.Wing", "extDetails.Weather.Temp"]}
    ).json()
    assert body["extDetails"]["CarSetup"]["properties"] == _labelled({"Wing": _detail("string", ["low"])})
    assert body["extDetails"]["Weather"]["properties"] == _labelled({"Temp": _detail("integer", [20])})
    body = api.get("/rta/v2/session-metamodel", {"prop": "extDetails", "folder": "f1"}).json()
    assert body["extDetails"]["CarSetup"]["properties"]["RideHeight"]["constraints"] == {"values": [25, 30]}
    body = api.get("/rta/v2/session-metamodel", {"prop": "extDetails", "folder": "f1a"}).json()
    assert body["extDetails"]["CarSetup"]["properties"]["RideHeight"]["constraints"] == {"values": [25]}


@pytest.mark.embedded
def test_metamodel_capabilities_hold_on_the_list_endpoint(api, modelled):
    body = api.get("/rta/v2/session-metamodel").json()
    for key, descriptor in body["details"].items():
        assert descriptor["capabilities"] == {"filter": True, "sort": True}
        for value in descriptor["constraints"]["values"]:
            found = identities(post_form(api, {"query": json.dumps({f"details.{key}": value})}))
            assert found, (key, value)
        assert identities(api.get(SESSIONS, {"sort": f"details.{key}:asc"}))


PROPERTY_CASES = [
    (
        "ride",
        None,
        [{"id": "extDetails.CarSetup.RideHeight", "label": "RideHeight", "description": "CarSetup (extended details)"}],
    ),
    ("DRIVER", None, [{"id": "details.Driver", "label": "Driver"}]),
    (
        "TimeStamp",
        None,
        [
            {"id": "endTimestamp", "label": "End"},
            {"id": "startTimestamp", "label": "Start"},
            {"id": "timestamp", "label": "Timestamp"},
        ],
    ),
    ("mix", None, [{"id": "details.Mixed", "label": "Mixed"}]),
    ("mix", "f1", []),
    (
        "details.",
        "f1a",
        [
            {"id": "details.Driver", "label": "Driver"},
            {"id": "details.Fuel", "label": "Fuel"},
            {"id": "details.Lap", "label": "Lap"},
            {"id": "details.Wet", "label": "Wet"},
            {"id": "details.When", "label": "When"},
            # "extDetails." contains "details." too
            {
                "id": "extDetails.CarSetup.RideHeight",
                "label": "RideHeight",
                "description": "CarSetup (extended details)",
            },
            {"id": "extDetails.CarSetup.Wing", "label": "Wing", "description": "CarSetup (extended details)"},
            {"id": "extDetails.Weather.Temp", "label": "Temp", "description": "Weather (extended details)"},
        ],
    ),
    ("zzz", None, []),
]


@pytest.mark.embedded
@pytest.mark.parametrize("partial,folder,expected", PROPERTY_CASES)
def test_metamodel_properties_match_partially_and_case_insensitively(api, modelled, partial, folder, expected):
    params = {"query": partial, **({"folder": folder} if folder else {})}
    response = api.get("/rta/v2/session-metamodel/properties", params)
    assert response.status_code == 200
    assert response.json() == expected


@pytest.mark.embedded
def test_metamodel_properties_without_a_query_list_everything(api, modelled):
    ids = [p["id"] for p in api.get("/rta/v2/session-metamodel/properties").json()]
    for expected in ("identifier", "state", "timestamp", "quality", "details.When", "extDetails.Weather.Temp"):
        assert expected in ids
    assert ids == sorted(ids)
    assert api.get("/rta/v2/session-metamodel/properties", {"folder": "nowhere"}).status_code == 200


# --- PostgreSQL: ordinal string order whatever the collation ------------------------------------


def test_core_strings_compare_and_sort_ordinally_under_a_linguistic_collation(api, postgres):
    from django.db import connection

    from sessions_app.models import Session

    table = Session._meta.db_table
    with connection.cursor() as cursor:
        # Rolled back with the test: a linguistic collation would put "alpha" before "Beta".
        for column in ("identifier", "type"):
            cursor.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE varchar(1024) COLLATE "en-x-icu"')
    make_session("s1", identifier="Beta", type="Zulu")
    make_session("s2", identifier="alpha", type="apple")
    make_session("s3", identifier="Alpha", type="Banana")
    assert identities(post_form(api, {"query": '{"identifier": {"$gt": "B"}}', "sort": "identity"})) == ["s1", "s2"]
    assert identities(post_form(api, {"query": '{"identifier": {"$lt": "Beta"}}', "sort": "identity"})) == ["s3"]
    assert identities(api.get(SESSIONS, {"sort": "identifier:asc"})) == ["s3", "s1", "s2"]
    assert identities(api.get(SESSIONS, {"sort": "type:desc"})) == ["s2", "s1", "s3"]


def test_detail_strings_compare_and_sort_with_the_c_collation(postgres):
    from sessions_app.query.compiler import compile_query
    from sessions_app.query.sorting import order_by

    for op in ("$gt", "$gte", "$lt", "$lte"):
        sql, _ = compile_query({"details.Driver": {op: "B"}})
        assert 'COLLATE "C"' in sql, op
    sql, _ = compile_query({"extDetails.G.K": {"$lt": "B"}})
    assert 'COLLATE "C"' in sql
    assert any(
        'COLLATE "C"' in str(getattr(e, "expression", e).sql)
        for e in order_by(["details.Driver:asc"])
        if hasattr(getattr(e, "expression", e), "sql")
    )


def test_detail_equality_uses_jsonb_containment(postgres):
    from sessions_app.query.compiler import compile_query

    sql, params = compile_query({"details.Driver": "Ann", "extDetails.G.K": {"$in": [1, True]}})
    assert sql.count("@>") == 3
    assert json.loads(params[0]) == {"Driver": "Ann"}
    assert [json.loads(p) for p in params[1:]] == [{"G": {"K": 1}}, {"G": {"K": True}}]
