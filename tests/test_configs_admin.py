"""Config admin: list, readable detail page, delete with bound-session warnings, publish form."""

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from config_app.models import Config
from config_app.services import store
from tests.factories import make_session
from tests.test_configs_store import stored_files
from tests.test_configs_validation import demo_config

JSON = "application/vnd.mat.config+json"
FFC = "application/vnd.mat.config+ffc"
DEMO = json.dumps(demo_config()).encode()
pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    store.put_config("demo/config ✓", JSON, DEMO)
    store.put_config("firmware.ffc", FFC, b"\x00" * 2048)
    make_session("session-a", identifier="Run A", config_bindings=[{"identifier": "demo/config ✓"}])
    make_session(
        "session-b", identifier="Run B", config_bindings=[{"identifier": "demo/config ✓", "channel_offset": 10}]
    )
    make_session("session-c", identifier="Run C", config_bindings=[{"identifier": "other"}])
    return Config.objects.get(identifier="demo/config ✓")


def page_text(response):
    """The page's HTML with whitespace (non-breaking spaces included) collapsed."""
    return re.sub(r"\s+", " ", response.content.decode().replace("\xa0", " "))


def change_url(config):
    return reverse("admin:config_app_config_change", args=[config.pk])


def test_list(admin_client, demo):
    response = admin_client.get(reverse("admin:config_app_config_changelist"))
    assert response.status_code == 200
    rows = {c.identifier: c for c in response.context["cl"].result_list}
    assert rows["demo/config ✓"].session_count == 2
    assert rows["firmware.ffc"].session_count == 0
    html = page_text(response)
    assert "demo/config ✓" in html and "firmware.ffc" in html
    assert "2.0 KB" in html  # human-readable size
    assert "Publish config" in html
    assert admin_client.get(reverse("admin:config_app_config_changelist") + "?q=firmware").status_code == 200


def test_detail_renders_the_config_as_people_read_it(admin_client, demo):
    response = admin_client.get(change_url(demo))
    assert response.status_code == 200
    html = page_text(response)
    for text in (
        "Application demo",
        "Demo application",
        "Chassis",
        "Wheels",
        "nWheelFL:demo",  # the tree
        "vCar",
        "Car speed",
        "km/h",
        "rpm",
        "400",
        "speed:demo",  # parameters: name, desc, unit (conversion), max
        "3f32",
        "timestamped",
        "10 ms (100 Hz)",  # channels
        "coefficients 0, 0.01, 0, 0, 0, 1",
        "1st",  # conversions
        "0008:demo Example Event",
        "high",  # events
        "E1 Sensor",  # error definitions
        "Sessions bound to this config (2)",
        "Run A",
        "Run B",
    ):
        assert text in html, text
    assert "Run C" not in html
    assert reverse("admin:sessions_app_session_change", args=["session-a"]) in html
    assert "/rta/v2/configs/demo%2Fconfig%20%E2%9C%93" in html  # download link
    parameters = response.context["applications"][0]["parameters"]["rows"]
    assert [(p["name"], p["unit"], p["min"], p["max"]) for p in parameters] == [
        ("vCar", "km/h", 0, 400),
        ("nWheelFL", "rpm", 0, 3000),
        ("gLat", "", -6, 6),
    ]
    # read-only: no save buttons, no add form; delete is offered
    assert 'name="_save"' not in html
    assert reverse("admin:config_app_config_delete", args=[demo.pk]) in html
    assert admin_client.get(reverse("admin:config_app_config_add")).status_code == 403
    assert admin_client.post(change_url(demo), {"identifier": "changed"}).status_code == 403
    assert Config.objects.get(pk=demo.pk).identifier == "demo/config ✓"


def test_detail_of_ffc_config(admin_client, demo):
    response = admin_client.get(change_url(Config.objects.get(identifier="firmware.ffc")))
    assert response.status_code == 200
    assert "opaque binary" in response.content.decode()
    assert "No session binds this config." in response.content.decode()


def test_delete_warns_about_bound_sessions_and_uses_the_store(admin_client, demo, django_capture_on_commit_callbacks):
    delete_url = reverse("admin:config_app_config_delete", args=[demo.pk])
    response = admin_client.get(delete_url)
    assert response.status_code == 200
    html = page_text(response)
    assert "2 sessions bind this config and will lose it" in html
    assert "Run A" in html and "Run B" in html
    assert reverse("admin:sessions_app_session_change", args=["session-b"]) in html
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert not store.has_config("demo/config ✓")
    assert len(stored_files()) == 1  # only the FFC config is left


def test_bulk_delete_warns_about_bound_sessions(admin_client, demo, django_capture_on_commit_callbacks):
    changelist = reverse("admin:config_app_config_changelist")
    pks = [str(pk) for pk in Config.objects.values_list("pk", flat=True)]
    response = admin_client.post(changelist, {"action": "delete_selected", "_selected_action": pks})
    assert response.status_code == 200
    html = page_text(response)
    assert "sessions bind some of these configs" in html and "Run A" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(changelist, {"action": "delete_selected", "_selected_action": pks, "post": "yes"})
    assert response.status_code == 302
    assert not Config.objects.exists() and stored_files() == []


def test_publish_form(admin_client):
    publish = reverse("admin:config_app_config_publish")
    assert admin_client.get(publish).status_code == 200
    upload = SimpleUploadedFile("demo.json", DEMO)
    response = admin_client.post(publish, {"identifier": "uploaded", "content_type": JSON, "file": upload})
    assert response.status_code == 302
    assert store.read_config("uploaded")[1] == DEMO
    # republishing is a no-op, reported as such
    response = admin_client.post(
        publish,
        {"identifier": "uploaded", "content_type": JSON, "file": SimpleUploadedFile("x.json", b"{}")},
        follow=True,
    )
    assert "already published" in response.content.decode()
    assert store.read_config("uploaded")[1] == DEMO
    # a bad config is shown on the form, naming the problem
    bad = demo_config()
    bad["demo"]["parameters"][0]["channels"] = [99]
    response = admin_client.post(
        publish,
        {"identifier": "bad", "content_type": JSON, "file": SimpleUploadedFile("b.json", json.dumps(bad).encode())},
    )
    assert response.status_code == 200
    assert "demo.parameters[0].channels[0]: channel 99 is not defined" in response.content.decode()
    assert not store.has_config("bad")
