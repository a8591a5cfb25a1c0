"""Schema Mapping Service (spec §14): SchemaMappingStore over a real in-process gRPC server,
the service's rules, and the admin pages."""

import json
import re

import grpc
import pytest
from django.conf import settings
from django.urls import reverse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rta.toolkit.api import schema_mapping_service_pb2 as pb  # noqa: E402  (importable once settings load)
from rta.toolkit.api import schema_mapping_service_pb2_grpc as pb_grpc  # noqa: E402

from config_app.models import SchemaMapping
from config_app.services import schema_mappings
from rta_core.errors import InvalidArgument, NotFound
from tests.factories import make_session
from tests.grpc_helpers import grpc_channel, grpc_server  # noqa: F401  (fixtures)

SERVICE = "rta.toolkit.api.schema_mapping_service.SchemaMappingStore"
SOURCE = "influx"
IDENTITY = "car='42' AND run=\"a/b c\""
db = pytest.mark.django_db(transaction=True)
T = pb.TargetChannelDataType


@pytest.fixture
def store(grpc_channel):  # noqa: F811
    return pb_grpc.SchemaMappingStoreStub(grpc_channel)


def status_of(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def field(name, channel, data_type=T.TARGET_CHANNEL_DATA_TYPE_DOUBLE64, **properties):
    return pb.FieldMapping(
        source_field=name,
        target_channel=channel,
        properties=properties,
        source_field_data_type="float",
        target_channel_data_type=data_type,
    )


def demo_mapping():
    return pb.SchemaMapping(
        properties={"dialect": "influxql", "database": "telemetry", "measurement": "car"},
        field_mappings=[
            field("speed", 1),
            field("rpm", 2, T.TARGET_CHANNEL_DATA_TYPE_UINT16, table="engine"),
            field("gear", 3, T.TARGET_CHANNEL_DATA_TYPE_INT8),
            field("throttle", 4, T.TARGET_CHANNEL_DATA_TYPE_FLOAT32),
            field("brake", 0xA),  # "A" in a channel expression
            field("steer", 10 + 6),  # 0x10: not "10" decimal
        ],
        event_mappings=[
            pb.EventMapping(
                source_event="pit",
                target_event_app="demo",
                target_event_id=8,
                properties={"severity": "high"},
                source_event_data_fields=["lap", "duration"],
            ),
            pb.EventMapping(source_event="flag", target_event_app="demo", target_event_id=-3),
        ],
    )


def put(store, mapping, source=SOURCE, identity=IDENTITY):
    request = pb.PutSchemaMappingRequest(data_source=source, data_identity=identity, schema_mapping=mapping)
    return store.PutSchemaMapping(request, timeout=10)


def get(store, source=SOURCE, identity=IDENTITY):
    return store.GetSchemaMapping(pb.GetSchemaMappingRequest(data_source=source, data_identity=identity), timeout=10)


def has(store, source=SOURCE, identity=IDENTITY):
    request = pb.HasSchemaMappingRequest(data_source=source, data_identity=identity)
    return store.HasSchemaMapping(request, timeout=10).value


def query(store, channels="", events=False, source=SOURCE, identity=IDENTITY):
    request = pb.QuerySchemaMappingRequest(
        data_source=source, data_identity=identity, select_channels=channels, select_events=events
    )
    return store.QuerySchemaMapping(request, timeout=10)


def delete(store, source=SOURCE, identity=IDENTITY):
    request = pb.DeleteSchemaMappingRequest(data_source=source, data_identity=identity)
    return store.DeleteSchemaMapping(request, timeout=10)


def channels_of(mapping):
    return [f.target_channel for f in mapping.field_mappings]


# --- plumbing --------------------------------------------------------------------------------


def test_registered_in_settings_with_health_and_reflection(grpc_server, grpc_channel):  # noqa: F811
    assert "config_app.grpc.register_schema_mappings" in settings.RTA_GRPC_SERVICES
    server, _ = grpc_server
    assert SERVICE in server.service_names
    health = health_pb2_grpc.HealthStub(grpc_channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    assert SERVICE in {s.name for reply in replies for s in reply.list_services_response.service}


def test_proto_matches_the_spec():
    service = pb.DESCRIPTOR.services_by_name["SchemaMappingStore"]
    rpcs = {m.name: (m.input_type.name, m.output_type.full_name) for m in service.methods}
    assert rpcs == {
        "HasSchemaMapping": ("HasSchemaMappingRequest", "google.protobuf.BoolValue"),
        "GetSchemaMapping": ("GetSchemaMappingRequest", f"{pb.DESCRIPTOR.package}.SchemaMapping"),
        "QuerySchemaMapping": ("QuerySchemaMappingRequest", f"{pb.DESCRIPTOR.package}.SchemaMapping"),
        "PutSchemaMapping": ("PutSchemaMappingRequest", "google.protobuf.Empty"),
        "DeleteSchemaMapping": ("DeleteSchemaMappingRequest", "google.protobuf.Empty"),
    }
    fields = {
        name: {f.name: f.number for f in pb.DESCRIPTOR.message_types_by_name[name].fields}
        for name in ("SchemaMapping", "FieldMapping", "EventMapping", "QuerySchemaMappingRequest")
    }
    assert fields["SchemaMapping"] == {"properties": 1, "field_mappings": 2, "event_mappings": 3}
    assert fields["FieldMapping"] == {
        "source_field": 1,
        "target_channel": 2,
        "properties": 3,
        "source_field_data_type": 4,
        "target_channel_data_type": 5,
    }
    assert fields["EventMapping"] == {
        "source_event": 1,
        "target_event_app": 2,
        "target_event_id": 3,
        "properties": 4,
        "source_event_data_fields": 5,
    }
    assert fields["QuerySchemaMappingRequest"] == {
        "data_source": 1,
        "data_identity": 2,
        "select_channels": 3,
        "select_events": 4,
    }
    values = {v.name.removeprefix("TARGET_CHANNEL_DATA_TYPE_"): v.number for v in T.DESCRIPTOR.values}
    assert values == schema_mappings.DATA_TYPES
    assert 9 not in values.values()


# --- every RPC -------------------------------------------------------------------------------


@db
def test_put_has_get_delete_round_trip(store):
    assert not has(store)
    put(store, demo_mapping())
    assert has(store)
    assert not has(store, identity=IDENTITY + " ")  # the pair is matched exactly
    assert not has(store, source="sql")
    assert get(store) == demo_mapping()
    delete(store)
    assert not has(store)
    assert status_of(lambda: get(store))[0] == grpc.StatusCode.NOT_FOUND
    delete(store)  # deleting what is absent is a no-op


@db
def test_put_replaces_the_whole_mapping(store):
    put(store, demo_mapping())
    replacement = pb.SchemaMapping(properties={"table": "laps"}, field_mappings=[field("lap_time", 7)])
    put(store, replacement)
    assert get(store) == replacement
    assert SchemaMapping.objects.count() == 1
    put(store, pb.SchemaMapping())  # an empty mapping is a mapping
    assert has(store) and get(store) == pb.SchemaMapping()


@db
def test_query_filters_by_channel_expression_and_events(store):
    put(store, demo_mapping())
    everything = query(store, "0-", events=True)
    assert everything == demo_mapping()
    result = query(store, "1-3,A")
    assert channels_of(result) == [1, 2, 3, 0xA]
    assert dict(result.properties) == dict(demo_mapping().properties)  # top-level properties kept
    assert list(result.event_mappings) == []
    assert result.field_mappings[1] == demo_mapping().field_mappings[1]  # whole field mappings, untouched
    assert channels_of(query(store, "10")) == [0x10]  # hexadecimal
    assert channels_of(query(store, "-2,F-")) == [1, 2, 0x10]
    assert channels_of(query(store, "100-")) == []
    events_only = query(store, "", events=True)
    assert channels_of(events_only) == []  # the empty expression selects no channel
    assert list(events_only.event_mappings) == list(demo_mapping().event_mappings)
    assert dict(events_only.properties) == dict(demo_mapping().properties)


@db
def test_absent_mapping_is_not_found(store):
    for call in (lambda: get(store), lambda: query(store, "0-", events=True)):
        code, details = status_of(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert "influx" in details


@db
def test_awkward_and_longest_identities(store):
    longest = "\U0001f600" * schema_mappings.MAX_IDENTITY_LENGTH  # 4 KiB of UTF-8: past a b-tree entry
    for identity in ("", "a/b%2F c", "quote\"and'", longest, "x" * 1024):
        put(store, pb.SchemaMapping(properties={"id": identity[:10]}), identity=identity)
        assert has(store, identity=identity)
        assert get(store, identity=identity).properties["id"] == identity[:10]
    assert SchemaMapping.objects.count() == 5


BAD_REQUESTS = {
    "empty source": ({"source": ""}, "data_source"),
    "NUL in identity": ({"identity": "car\x00"}, "NUL"),
    "NUL in source": ({"source": "in\x00flux"}, "NUL"),
    "over-long identity": ({"identity": "x" * 1025}, "1024"),
    "over-long source": ({"source": "s" * 257}, "256"),
}


@db
@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_keys_are_invalid_argument_on_every_rpc(store, case):
    key, words = BAD_REQUESTS[case]
    calls = [
        lambda: has(store, **key),
        lambda: get(store, **key),
        lambda: query(store, "0-", **key),
        lambda: put(store, demo_mapping(), **key),
        lambda: delete(store, **key),
    ]
    for call in calls:
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert words in details
    assert SchemaMapping.objects.count() == 0


@db
@pytest.mark.parametrize("expression", ["1-x", "G", "3-1", "1,,2", "-", "1-2-3", " ", "123456789"])
def test_bad_channel_expression_is_invalid_argument(store, expression):
    put(store, demo_mapping())
    code, details = status_of(lambda: query(store, expression))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "channel expression" in details


def bad_mappings():
    duplicate = demo_mapping()
    duplicate.field_mappings.append(field("again", 3))
    no_field = demo_mapping()
    no_field.field_mappings[0].source_field = ""
    unknown_type = demo_mapping()
    unknown_type.field_mappings[0].target_channel_data_type = 9  # reserved
    nul_property = demo_mapping()
    nul_property.properties["database"] = "tele\x00metry"
    no_event = demo_mapping()
    no_event.event_mappings[0].source_event = ""
    return {
        "duplicate target channel": (duplicate, "field_mappings[6].target_channel"),
        "empty source field": (no_field, "field_mappings[0].source_field"),
        "unknown data type": (unknown_type, "not a known data type"),
        "NUL in a property": (nul_property, "NUL"),
        "empty source event": (no_event, "event_mappings[0].source_event"),
    }


@db
@pytest.mark.parametrize("case", list(bad_mappings()))
def test_bad_mappings_are_invalid_argument_and_change_nothing(store, case):
    original = pb.SchemaMapping(properties={"kept": "yes"})
    put(store, original)
    mapping, words = bad_mappings()[case]
    code, details = status_of(lambda: put(store, mapping))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert words in details
    assert get(store) == original


# --- the service's rules ---------------------------------------------------------------------


@pytest.mark.django_db
def test_service_canonical_form_and_data_type_names():
    row, created = schema_mappings.put_schema_mapping(
        "sqlite",
        "laps.db",
        {
            "field_mappings": [
                {"source_field": "a", "target_channel": 1, "target_channel_data_type": "float32"},
                {
                    "source_field": "b",
                    "target_channel": 2,
                    "target_channel_data_type": "TARGET_CHANNEL_DATA_TYPE_UINT8",
                },
                {"source_field": "c", "target_channel": 3, "target_channel_data_type": 10},
            ]
        },
    )
    assert created and (row.field_count, row.event_count) == (3, 0)
    stored = schema_mappings.get_schema_mapping("sqlite", "laps.db")
    assert stored["properties"] == {} and stored["event_mappings"] == []
    assert [f["target_channel_data_type"] for f in stored["field_mappings"]] == ["FLOAT32", "UINT8", "DOUBLE64"]
    assert stored["field_mappings"][0] == {
        "source_field": "a",
        "target_channel": 1,
        "properties": {},
        "source_field_data_type": "",
        "target_channel_data_type": "FLOAT32",
    }
    _, created = schema_mappings.put_schema_mapping("sqlite", "laps.db", {})
    assert not created


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mapping, field",
    [
        ({"colour": {}}, "schema_mapping"),
        ({"properties": {"a": 1}}, "schema_mapping.properties['a']"),
        (
            {"field_mappings": [{"source_field": "a", "target_channel": -1}]},
            "schema_mapping.field_mappings[0].target_channel",
        ),
        (
            {"field_mappings": [{"source_field": "a", "target_channel": True}]},
            "schema_mapping.field_mappings[0].target_channel",
        ),
        ({"field_mappings": [{"source_field": "a", "chanel": 1}]}, "schema_mapping.field_mappings[0]"),
        (
            {"event_mappings": [{"source_event": "e", "target_event_id": 2**31}]},
            "schema_mapping.event_mappings[0].target_event_id",
        ),
        ({"event_mappings": [{"source_event": "\ud800"}]}, "schema_mapping.event_mappings[0].source_event"),
        ({"field_mappings": {}}, "schema_mapping.field_mappings"),
    ],
)
def test_service_names_the_bad_part(mapping, field):
    with pytest.raises(InvalidArgument) as info:
        schema_mappings.put_schema_mapping("s", "i", mapping)
    assert info.value.field == field
    assert not SchemaMapping.objects.exists()


@pytest.mark.django_db
def test_service_not_found_names_the_field():
    with pytest.raises(NotFound) as info:
        schema_mappings.get_schema_mapping("s", "absent")
    assert info.value.field == "data_identity"
    with pytest.raises(InvalidArgument) as info:
        schema_mappings.query_schema_mapping("s", "absent", "zz")
    assert info.value.field == "select_channels"


@pytest.fixture
def bound():
    """Two mappings; sessions bind the first twice (over two time refs) and an unmapped identity."""
    schema_mappings.put_schema_mapping(SOURCE, IDENTITY, {"properties": {"database": "telemetry"}})
    schema_mappings.put_schema_mapping(SOURCE, "unused", {})
    binding = {"source": SOURCE, "identity": IDENTITY}
    make_session("session-a", identifier="Run A", timestamp="2024-01-01T00:00:00Z", data_bindings=[binding])
    make_session(
        "session-b",
        identifier="Run B",
        timestamp="2024-02-01T00:00:00Z",
        data_bindings=[binding, {**binding, "time_ref": 5}, {"source": "sql", "identity": IDENTITY}],
    )
    make_session("session-c", identifier="Run C", data_bindings=[{"source": SOURCE, "identity": "other"}])
    return SchemaMapping.objects.get(data_identity=IDENTITY)


@pytest.mark.django_db
def test_mappings_with_the_sessions_that_use_them(bound):
    listed = {
        row.data_identity: [s.identity for s in sessions] for row, sessions in schema_mappings.mappings_with_sessions()
    }
    assert listed == {IDENTITY: ["session-b", "session-a"], "unused": []}
    counts = {
        row.data_identity: row.session_count for row in schema_mappings.with_session_counts(SchemaMapping.objects.all())
    }
    assert counts == {IDENTITY: 2, "unused": 0}
    assert [s.identity for s in schema_mappings.bound_sessions(SOURCE, IDENTITY)] == ["session-b", "session-a"]


# --- admin -----------------------------------------------------------------------------------


def page_text(response):
    return re.sub(r"\s+", " ", response.content.decode().replace("\xa0", " "))


def change_url(row):
    return reverse("admin:config_app_schemamapping_change", args=[row.pk])


@pytest.mark.django_db
def test_admin_list_filters_and_search(admin_client, bound):
    schema_mappings.put_schema_mapping(
        "sqlite", "laps.db", {"field_mappings": [{"source_field": "a", "target_channel": 1}]}
    )
    changelist = reverse("admin:config_app_schemamapping_changelist")
    response = admin_client.get(changelist)
    assert response.status_code == 200
    rows = {row.data_identity: row for row in response.context["cl"].result_list}
    assert set(rows) == {IDENTITY, "unused", "laps.db"}
    assert rows[IDENTITY].session_count == 2 and rows["laps.db"].field_count == 1
    filtered = admin_client.get(changelist, {"data_source": "sqlite"})
    assert [row.data_identity for row in filtered.context["cl"].result_list] == ["laps.db"]
    searched = admin_client.get(changelist, {"q": "car='42'"})
    assert [row.data_identity for row in searched.context["cl"].result_list] == [IDENTITY]


@pytest.mark.django_db
def test_admin_change_page_shows_mapping_and_sessions(admin_client, bound):
    response = admin_client.get(change_url(bound))
    assert response.status_code == 200
    html = page_text(response)
    assert "telemetry" in html
    assert "2 session(s)" in html
    for identity in ("session-a", "session-b"):
        assert reverse("admin:sessions_app_session_change", args=[identity]) in html
    assert "Run A" in html and "Run C" not in html
    unused = SchemaMapping.objects.get(data_identity="unused")
    assert "No session&#x27;s data bindings use it." in admin_client.get(change_url(unused)).content.decode()


@pytest.mark.django_db
def test_admin_edits_through_the_service(admin_client, bound):
    url = change_url(bound)
    mapping = {"properties": {"database": "other"}, "field_mappings": [{"source_field": "x", "target_channel": 5}]}
    response = admin_client.post(url, {"mapping": json.dumps(mapping), "_save": "Save"})
    assert response.status_code == 302
    stored = schema_mappings.get_schema_mapping(SOURCE, IDENTITY)
    assert stored["properties"] == {"database": "other"}
    assert stored["field_mappings"][0]["target_channel_data_type"] == "UNSPECIFIED"  # canonical form
    assert SchemaMapping.objects.get(pk=bound.pk).field_count == 1

    duplicate = {
        "field_mappings": [{"source_field": "x", "target_channel": 5}, {"source_field": "y", "target_channel": 5}]
    }
    response = admin_client.post(url, {"mapping": json.dumps(duplicate), "_save": "Save"})
    assert response.status_code == 200
    assert "already the target of field_mappings[0]" in " ".join(response.context["adminform"].form.errors["mapping"])
    response = admin_client.post(url, {"mapping": "{not json", "_save": "Save"})
    assert response.status_code == 200 and response.context["adminform"].form.errors["mapping"]
    assert schema_mappings.get_schema_mapping(SOURCE, IDENTITY) == stored  # nothing changed


@pytest.mark.django_db
def test_admin_adds_and_deletes_through_the_service(admin_client, bound):
    add = reverse("admin:config_app_schemamapping_add")
    assert admin_client.get(add).status_code == 200
    mapping = {"event_mappings": [{"source_event": "pit", "target_event_app": "demo", "target_event_id": 8}]}
    response = admin_client.post(add, {"data_source": "csv", "data_identity": "run 1/", "mapping": json.dumps(mapping)})
    assert response.status_code == 302
    assert schema_mappings.get_schema_mapping("csv", "run 1/")["event_mappings"][0]["source_event_data_fields"] == []

    response = admin_client.post(add, {"data_source": "csv", "data_identity": "run 1/", "mapping": "{}"})
    assert response.status_code == 200 and "exists already" in page_text(response)
    response = admin_client.post(add, {"data_source": "csv", "data_identity": "x\x00", "mapping": "{}"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors  # Django's own form refuses NUL before the service
    response = admin_client.post(add, {"data_source": "csv", "data_identity": "y", "mapping": '{"colour": 1}'})
    assert "unknown key" in " ".join(response.context["adminform"].form.errors["mapping"])

    row = SchemaMapping.objects.get(data_source="csv")
    delete_url = reverse("admin:config_app_schemamapping_delete", args=[row.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not schema_mappings.has_schema_mapping("csv", "run 1/")
