import pytest

from tests import auth_mode


@pytest.mark.django_db
def test_index_names_product_version_and_services(client):
    body = client.get("/").json()
    assert body["product"] == "RTA Server"
    assert body["version"]
    assert "rest" in body["services"]


@pytest.mark.django_db
def test_health_is_healthy_when_database_and_store_are_reachable(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.content == b"Healthy"


@pytest.mark.django_db
def test_health_reports_unreachable_redis(client, settings):
    settings.RTA_REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/health")
    assert response.status_code == 503
    assert b"Unhealthy" in response.content and b"redis" in response.content


@pytest.mark.django_db
def test_health_checks_configured_redis(client, settings, redis_url):
    settings.RTA_REDIS_URL = redis_url
    assert client.get("/health").status_code == 200


@pytest.mark.django_db
def test_health_reports_unwritable_data_store(client, settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings.RTA_DATA_PATH = blocker / "data"
    response = client.get("/health")
    assert response.status_code == 503
    assert b"data store" in response.content


@pytest.mark.django_db
def test_metrics_count_requests_by_route(client):
    client.get("/rta/v2/sessions/does-not-exist")
    client.get("/rta/v2/sessions/does/not/exist/data/periodic/1-3")
    text = client.get("/metrics").content.decode()
    assert 'rta_http_requests_total{method="GET",route="/rta/v2/sessions/<identity>",status="404"}' in text
    assert (
        'rta_http_requests_total{method="GET",route="/rta/v2/sessions/<identity>/data/<kind>/<channels>",status="404"}'
    ) in text
    assert "rta_http_request_duration_seconds_bucket" in text


@pytest.mark.django_db
def test_info_has_label_description_and_authentication(client, settings):
    settings.RTA_SERVICE_LABEL = "Test Lab"
    body = client.get("/rta/v2/info").json()
    assert body == {
        "label": "Test Lab",
        "description": settings.RTA_SERVICE_DESCRIPTION,
        "requiresAuthentication": auth_mode.active(),  # true in the auth-on run (make test-auth)
    }


@pytest.mark.django_db
def test_openapi_schema_lists_every_rest_path(client):
    response = client.get("/rta/v2/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    for path in (
        "/rta/v2/sessions",
        "/rta/v2/sessions/{identity}",
        "/rta/v2/session-metamodel",
        "/rta/v2/session-metamodel/properties",
        "/rta/v2/info",
        "/rta/v2/configs/{identifier}",
        "/rta/v2/session-folders/{parent}",
        "/rta/v2/sessions/{identity}/data-bindings",
        "/rta/v2/sessions/{identity}/data/timestamped/{channels}",
        "/rta/v2/sessions/{identity}/data/periodic/{channels}",
        "/rta/v2/sessions/{identity}/data/row/{channels}",
        "/rta/v2/sessions/{identity}/data/events",
        "/rta/v2/sessions/{identity}/stream",
        "/",
        "/health",
        "/metrics",
    ):
        assert path in schema["paths"], path
    data = schema["paths"]["/rta/v2/sessions/{identity}/data/periodic/{channels}"]["get"]
    assert {p["name"] for p in data["parameters"]} == {"identity", "channels", "start", "end"}
    assert "application/vnd.mat.protobuf+chunked" in data["responses"]["200"]["content"]
