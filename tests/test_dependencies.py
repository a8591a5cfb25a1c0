"""Advanced Streams dependencies: the service rules, REST /api/dependencies and load_dependencies."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from config_app.models import Dependency
from config_app.services import dependencies
from rta_core.errors import InvalidArgument

pytestmark = pytest.mark.django_db

FORMAT = {"feeds": {"": {"parameters": [{"identifier": "vCar:Chassis", "aggregates": "avg|max"}], "frequency": 100}}}
ATLAS = {"appGroups": {"Chassis": {"groups": {"State": {"parameters": {"vCar:Chassis": {"name": "vCar"}}}}}}}


def put(api, kind, ident, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return api.put(f"/api/dependencies/{kind}/{ident}", data=data, content_type=content_type)


def test_put_get_head_and_idempotent_republish(api):
    response = put(api, "dataFormat", "9a9627b7bc25", FORMAT)
    assert response.status_code == 201, response.content
    assert response.json() == {"type": "dataFormat", "id": "9a9627b7bc25"}
    assert response["Location"].endswith("/api/dependencies/dataFormat/9a9627b7bc25")
    got = api.get("/api/dependencies/dataFormat/9a9627b7bc25")
    assert got.status_code == 200 and got["Content-Type"] == "application/json"
    assert got.json() == FORMAT
    etag = got["ETag"]
    assert api.get("/api/dependencies/dataFormat/9a9627b7bc25", HTTP_IF_NONE_MATCH=etag).status_code == 304
    head = api.head("/api/dependencies/dataFormat/9a9627b7bc25")
    assert head.status_code == 200 and head.content == b"" and int(head["Content-Length"]) > 0
    # The same document again (keys in another order): a no-op.
    reordered = {"feeds": {"": {"frequency": 100, "parameters": FORMAT["feeds"][""]["parameters"]}}}
    assert put(api, "dataFormat", "9a9627b7bc25", reordered).status_code == 200
    assert Dependency.objects.count() == 1


def test_a_different_document_under_an_existing_id_is_a_conflict(api):
    assert put(api, "dataFormat", "f1", FORMAT).status_code == 201
    other = {"feeds": {"": {"parameters": ["nEngine:Engine"]}}}
    response = put(api, "dataFormat", "f1", other)
    assert response.status_code == 409
    assert "already published with different content" in response.json()["error"]
    assert api.get("/api/dependencies/dataFormat/f1").json() == FORMAT


def test_post_names_the_document_by_its_content_hash(api):
    response = api.post("/api/dependencies/atlasConfiguration", data=json.dumps(ATLAS), content_type="application/json")
    assert response.status_code == 201
    ident = response.json()["id"]
    assert ident == dependencies.content_id(ATLAS) and len(ident) == 12
    again = api.post("/api/dependencies/atlasConfiguration", data=json.dumps(ATLAS), content_type="application/json")
    assert again.status_code == 200 and again.json()["id"] == ident
    assert api.get(f"/api/dependencies/atlasConfiguration/{ident}").json() == ATLAS


@pytest.mark.parametrize(
    "kind, body, fragment",
    [
        ("dataFormat", b"{not json", "not valid JSON"),
        ("dataFormat", b"[1, 2]", "must be a JSON object"),
        ("dataFormat", {"feeds": {}}, "dataFormat.feeds: must be a non-empty object"),
        ("dataFormat", {"feeds": {"": {"parameters": [{"identifier": ""}]}}}, "parameters[0].identifier"),
        (
            "dataFormat",
            {"feeds": {"": {"parameters": [{"identifier": "a", "aggregates": "avg,median"}]}}},
            "unknown aggregate 'median'",
        ),
        ("dataFormat", {"feeds": {"": {"parameters": ["a", "a"]}}}, "appears twice"),
        ("dataFormat", {"feeds": {"": {"parameters": [], "frequency": -1}}}, "frequency"),
        (
            "atlasConfiguration",
            {"appGroups": {"A": {"groups": {"G": {"parameters": {"p": {"units": 3}}}}}}},
            "parameters['p'].units: must be a string",
        ),
        ("atlasConfiguration", {"events": {"E1": {"priority": "urgent"}}}, "priority"),
        (
            "atlasConfiguration",
            {"conversions": {"c": {"rational": {"coeffs": [1, 2]}}}},
            "atlasConfiguration.conversions",
        ),
    ],
)
def test_invalid_documents_are_400_and_store_nothing(api, kind, body, fragment):
    response = put(api, kind, "x1", body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert not Dependency.objects.exists()


def test_bad_types_ids_missing_and_too_large(api, settings):
    assert put(api, "1bad", "x", FORMAT).status_code == 400
    assert api.get("/api/dependencies/dataFormat/nope").status_code == 404
    assert api.get("/api/dependencies/dataFormat/nope").json() == {"error": "dataFormat 'nope' not found"}
    assert api.head("/api/dependencies/dataFormat/nope").status_code == 404
    assert put(api, "dataFormat", "x" * 300, FORMAT).status_code == 400
    settings.RTA_DEPENDENCY_MAX_BYTES = 50
    response = put(api, "dataFormat", "big", FORMAT)
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert api.delete("/api/dependencies/dataFormat/x").status_code == 405


def test_other_types_are_stored_unvalidated():
    ident, created = dependencies.publish("modelParameters", {"anything": [1, 2, 3]})
    assert created and dependencies.find("modelParameters", ident) == {"anything": [1, 2, 3]}
    with pytest.raises(InvalidArgument):
        dependencies.publish("modelParameters", [1, 2])


def test_load_dependencies_command(tmp_path):
    envelopes = tmp_path / "deps.json"
    envelopes.write_text(
        json.dumps(
            [
                {"type": "dataFormat", "id": "fmt", "document": FORMAT},
                {"type": "atlasConfiguration", "document": ATLAS},
            ]
        )
    )
    bare = tmp_path / "format.json"
    bare.write_text(json.dumps({"feeds": {"x": {"parameters": ["p:A"]}}}))
    out = io.StringIO()
    call_command("load_dependencies", str(envelopes), stdout=out)
    call_command("load_dependencies", str(bare), "--type", "dataFormat", "--id", "bare", stdout=out)
    assert "published" in out.getvalue()
    assert dependencies.find("dataFormat", "fmt") == FORMAT
    assert dependencies.find("atlasConfiguration", dependencies.content_id(ATLAS)) == ATLAS
    assert dependencies.find("dataFormat", "bare") == {"feeds": {"x": {"parameters": ["p:A"]}}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "dataFormat", "id": "b", "document": {"feeds": 3}}))
    with pytest.raises(CommandError, match="could not be published"):
        call_command("load_dependencies", str(bad), stdout=io.StringIO())
    assert dependencies.find("dataFormat", "b") is None
