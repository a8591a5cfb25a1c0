"""The Django admin of the Session Service: lists, filters, pictures, and edits through the service layer."""

import json
import re
from html.parser import HTMLParser
from unittest import mock

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory

from rta_core import timeutil
from sessions_app.admin import display as admin_display
from sessions_app.models import ROOT_FOLDER, Folder, FolderLink, Marker, RefKind, Session, SessionRef
from sessions_app.services import folders, updates
from sessions_app.services.updates import create_or_update_session

S = 1_000_000_000
START = 1_716_213_600 * S  # 2024-05-20T14:00:00Z

CHANGELIST = "/admin/sessions_app/session/"
FOLDERS = "/admin/sessions_app/folder/"


def change_url(identity):
    return f"{CHANGELIST}{identity}/change/"


# --- helpers ---------------------------------------------------------------------------------


class FormInputs(HTMLParser):
    """What a browser would submit for one <form id=...>: inputs, selects and textareas."""

    def __init__(self, form_id):
        super().__init__(convert_charrefs=True)
        self.form_id, self.in_form, self.data = form_id, False, {}
        self._select = self._textarea = None
        self._select_first = None
        self._text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.in_form = a.get("id") == self.form_id
            return
        if not self.in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.data[name] = a.get("value", "on" if kind in ("checkbox", "radio") else "")
        elif tag == "select" and name:
            self._select, self._select_first = name, None
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._select_first is None:
                self._select_first = value
            if "selected" in a:
                self.data[self._select] = value
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False
        elif tag == "select" and self._select:
            self.data.setdefault(self._select, self._select_first or "")
            self._select = None
        elif tag == "textarea" and self._textarea:
            text = "".join(self._text)
            self.data[self._textarea] = text[1:] if text.startswith("\n") else text
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self._text.append(data)


def form_data(response, form_id):
    parser = FormInputs(form_id)
    parser.feed(response.content.decode())
    return {k: v for k, v in parser.data.items() if "__prefix__" not in k}


def add_inline_row(data, prefix, **fields):
    """Append one row to an inline formset in ``data`` (bumping its TOTAL_FORMS)."""
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)
    for name, value in fields.items():
        data[f"{prefix}-{index}-{name}"] = value
    return index


def inline_rows(data, prefix):
    """{row index: {field: value}} for an inline formset in ``data``."""
    rows = {}
    for key, value in data.items():
        m = re.match(rf"^{re.escape(prefix)}-(\d+)-(.+)$", key)
        if m:
            rows.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return rows


def make_session(identity, identifier=None, state=4, timestamp="2024-05-20T15:00:00+01:00", **ops):
    updates = [("set_details", {"details": ops.pop("details", {})})] if "details" in ops else []
    for op, arg in ops.items():
        updates.append((op, arg))
    create_or_update_session(
        identity, updates, create={"state": state, "timestamp": timestamp, "identifier": identifier or identity}
    )
    return Session.objects.get(identity=identity)


@pytest.fixture
def sessions(db):
    folders.put_folder("", "season", "Season 2024")
    folders.put_folder("season", "silverstone", "Silverstone")
    folders.put_folder("", "tests", "Test days")
    laps = [
        {"id": "lap1", "category": "Laps", "label": "Lap 1", "start_time": START, "end_time": START + 200 * S},
        {
            "id": "lap2",
            "category": "Laps",
            "label": "Lap 2",
            "start_time": START + 200 * S,
            "end_time": START + 390 * S,
        },
        {"id": "pit", "category": "Events", "label": "Pit stop", "start_time": START + 400 * S},
    ]
    race = make_session(
        "s-race",
        "Race Silverstone",
        details={"Driver": "Hamilton", "Track": "Silverstone", "Lap": 52},
        set_type="race",
        set_quality=0.9,
        set_time_range=(START, START + 600 * S),
        set_markers=laps,
        set_folders=["silverstone"],
        set_ref_anchors=["guid:RACE"],
        set_config_bindings=[{"identifier": "cfg-1", "channel_offset": 0}],
    )
    practice = make_session(
        "s-practice",
        "Practice 1",
        state=2,
        timestamp="2024-03-01T09:00:00Z",
        details={"Driver": "Norris", "Track": "Bahrain"},
        set_type="practice",
        set_folders=["tests"],
    )
    child = make_session(
        "s-child", "Race Silverstone (telemetry)", timestamp="2024-05-20T14:00:00Z", set_child_of_refs=["guid:RACE"]
    )
    return {"race": race, "practice": practice, "child": child}


def body(response):
    return response.content.decode()


SERVICE = "sessions_app.services.updates.create_or_update_session"


def service_spy(**kwargs):
    """Spy on CreateOrUpdateSession as the admin calls it (wrapping the real one by default)."""
    kwargs.setdefault("wraps", create_or_update_session)
    return mock.patch(SERVICE, **kwargs)


def applied(spy):
    """The calls that applied changes (forms also dry-run ops on throw-away sessions)."""
    return [c for c in spy.call_args_list if not c.args[0].startswith(updates.DRY_RUN_PREFIX)]


# --- pictures and formatting -----------------------------------------------------------------


def test_durations_and_ranges_read_as_people_write_them():
    assert timeutil.format_duration(600 * S) == "10 min 0 s"
    assert timeutil.format_duration(3723 * S) == "1 h 2 min 3 s"
    assert timeutil.format_duration(2 * S + S // 2) == "2.5 s"
    assert timeutil.format_duration(350_000_000) == "350 ms"
    assert timeutil.format_duration(2 * 86400 * S + 3 * 3600 * S) == "2 d 3 h 0 min"
    assert timeutil.format_range(START, START + 600 * S) == "2024-05-20 14:00:00.000 → 14:10:00.000 UTC"
    assert timeutil.format_range(None, None) == "—"


def test_timeline_svg_draws_markers_as_labelled_bars_per_category():
    markers = [
        {"marker_id": "lap1", "category": "Laps", "label": "Lap 1", "start_time": START, "end_time": START + 300 * S},
        {"marker_id": "p", "category": "Events", "label": "<pit>", "start_time": START + 400 * S, "end_time": None},
    ]
    svg = str(admin_display.timeline_svg(START, START + 600 * S, markers))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert ">Laps<" in svg and ">Events<" in svg and ">Lap 1<" in svg
    assert "&lt;pit&gt;" in svg and "<pit>" not in svg  # labels are escaped
    assert "14:05:00" in svg  # tick labels in UTC
    assert admin_display.timeline_svg(None, None, []) == ""


# --- the session list ------------------------------------------------------------------------


def test_changelist_shows_sessions_with_state_badge_times_and_duration(admin_client, sessions):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = body(response)
    for text in ("s-race", "Race Silverstone", "Practice 1", "2024-05-20T15:00:00+01:00", "race", "0.9"):
        assert text in html
    assert "2024-05-20 14:00:00 → 14:10:00" in html  # the column is headed UTC
    assert "10 min 0 s" in html
    assert 'class="rta-state"' in html and ">closed<" in html and ">open<" in html
    # Most recent first (by instant): the race before the practice.
    assert html.index("s-race") < html.index("s-practice")


@pytest.mark.embedded
def test_search_finds_sessions_by_detail_value_identity_and_identifier(admin_client, sessions):
    html = body(admin_client.get(CHANGELIST, {"q": "hamilton"}))
    assert "s-race" in html and "s-practice" not in html
    html = body(admin_client.get(CHANGELIST, {"q": "Bahrain"}))
    assert "s-practice" in html and "s-race" not in html
    html = body(admin_client.get(CHANGELIST, {"q": "practice"}))
    assert "s-practice" in html and "s-race" not in html
    # Every word must match somewhere (identifier and a detail value here).
    html = body(admin_client.get(CHANGELIST, {"q": "Race Hamilton"}))
    assert "s-race" in html and "s-child" not in html
    html = body(admin_client.get(CHANGELIST, {"q": "Verstappen"}))
    assert "s-race" not in html and "s-practice" not in html


@pytest.mark.embedded
def test_search_matches_ext_details(admin_client, sessions):
    create_or_update_session("s-race", [("set_details_json", {"category": "CarSetup", "json": '{"Wing": "lowdrag"}'})])
    html = body(admin_client.get(CHANGELIST, {"q": "lowdrag"}))
    assert "s-race" in html and "s-practice" not in html


def _listed(response):
    return set(re.findall(r'name="_selected_action" value="([^"]+)"', body(response)))


@pytest.mark.embedded
def test_filters_by_state_type_folder_and_date(admin_client, sessions):
    assert _listed(admin_client.get(CHANGELIST)) == {"s-race", "s-practice", "s-child"}
    assert _listed(admin_client.get(CHANGELIST, {"state__exact": "2"})) == {"s-practice"}
    assert _listed(admin_client.get(CHANGELIST, {"type": "race"})) == {"s-race"}
    # A folder includes its sub-folders.
    assert _listed(admin_client.get(CHANGELIST, {"folder": "season"})) == {"s-race"}
    assert _listed(admin_client.get(CHANGELIST, {"folder": "silverstone"})) == {"s-race"}
    assert _listed(admin_client.get(CHANGELIST, {"folder": "tests"})) == {"s-practice"}
    assert _listed(admin_client.get(CHANGELIST, {"timestamp__year": "2024", "timestamp__month": "3"})) == {"s-practice"}
    assert _listed(
        admin_client.get(CHANGELIST, {"timestamp__year": "2024", "timestamp__month": "5", "timestamp__day": "20"})
    ) == {"s-race", "s-child"}
    html = body(admin_client.get(CHANGELIST))
    assert "Season 2024" in html and "Silverstone" in html  # folder filter choices


def test_close_selected_sessions_action_uses_the_service(admin_client, sessions):
    with service_spy() as spy:
        response = admin_client.post(
            CHANGELIST, {"action": "close_sessions", "_selected_action": ["s-practice", "s-race"]}, follow=True
        )
    assert response.status_code == 200
    assert "Closed 1 session." in body(response)
    assert Session.objects.get(identity="s-practice").state == 4
    assert applied(spy) == [mock.call("s-practice", [("set_state", 4)])]


def test_move_to_folder_action(admin_client, sessions):
    response = admin_client.post(
        CHANGELIST,
        {"action": "move_to_folder", "_selected_action": ["s-practice"], "folder": "f:season"},
        follow=True,
    )
    assert "Moved 1 session(s)" in body(response)
    assert set(FolderLink.objects.filter(session_id="s-practice").values_list("folder_id", flat=True)) == {"season"}
    response = admin_client.post(
        CHANGELIST, {"action": "link_to_folder", "_selected_action": ["s-practice"]}, follow=True
    )
    assert "Choose a folder" in body(response)


def test_deleting_a_session_goes_through_the_service(admin_client, sessions):
    with mock.patch("sessions_app.services.updates.delete_sessions", wraps=updates.delete_sessions) as spy:
        response = admin_client.post(f"{CHANGELIST}s-practice/delete/", {"post": "yes"})
    assert response.status_code == 302
    spy.assert_called_once_with(["s-practice"])
    assert not Session.objects.filter(identity="s-practice").exists()


# --- the session change page -----------------------------------------------------------------


def test_change_page_renders_inlines_and_timeline(admin_client, sessions):
    response = admin_client.get(change_url("s-race"))
    assert response.status_code == 200
    html = body(response)
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="rta-timeline"' in html
    assert ">Lap 1<" in html and ">Laps<" in html and ">Events<" in html
    for prefix in ("markers", "folder_links", "refs", "config_bindings", "data_bindings"):
        assert f'name="{prefix}-TOTAL_FORMS"' in html
    data = form_data(response, "session_form")
    assert data["markers-TOTAL_FORMS"] == "3"
    assert json.loads(data["details"]) == {"Driver": "Hamilton", "Track": "Silverstone", "Lap": 52}
    assert data["folder_links-0-folder"] == "f:silverstone"
    # The child session is resolved from its child_of ref to the race's anchor.
    assert 'href="/admin/sessions_app/session/s-child/change/"' in html
    assert "2024-05-20 14:00:00.000 → 14:10:00.000 UTC, 10 min 0 s" in html


def test_unchanged_post_changes_nothing(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    with service_spy() as spy:
        response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 302, body(response)
    assert applied(spy) == []


@pytest.mark.embedded
def test_edit_is_applied_as_one_service_update(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    data["identifier"] = "Race Silverstone (edited)"
    data["details"] = json.dumps({"Driver": "Hamilton", "Track": "Silverstone", "Weather": "rain", "Laps": 52})
    data["ext_details"] = json.dumps({"CarSetup": {"RideHeight": 31.5}})
    data["type"] = ""
    add_inline_row(
        data,
        "markers",
        marker_id="lap3",
        category="Laps",
        label="Lap 3",
        start_time=str(START + 390 * S),
        end_time=str(START + 580 * S),
        details='{"fuel": 12.5}',
    )
    # Delete the pit marker and move the session into a second folder.
    for index, row in inline_rows(data, "markers").items():
        if row.get("marker_id") == "pit":
            data[f"markers-{index}-DELETE"] = "on"
    add_inline_row(data, "folder_links", folder="f:tests")

    with service_spy() as spy:
        response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 302, body(response)

    assert len(applied(spy)) == 1
    identity, ops = applied(spy)[0].args
    assert identity == "s-race"
    names = [op for op, _ in ops]
    assert names[:3] == ["set_identifier", "clear_type", "set_details"]
    # Inlines send what changed, never their whole collection as the page showed it.
    assert names[3:] == ["set_details_json", "delete_markers", "update_markers", "update_folders"]
    assert dict(ops)["delete_markers"] == ["pit"] and [m["id"] for m in dict(ops)["update_markers"]] == ["lap3"]

    race = Session.objects.get(identity="s-race")
    assert race.identifier == "Race Silverstone (edited)"
    assert race.details == {"Driver": "Hamilton", "Track": "Silverstone", "Weather": "rain", "Laps": 52}
    assert race.ext_details == {"CarSetup": {"RideHeight": 31.5}}
    assert race.type is None
    assert race.quality == 0.9
    markers = {m.marker_id: m for m in Marker.objects.filter(session=race)}
    assert set(markers) == {"lap1", "lap2", "lap3"}
    assert markers["lap3"].details == {"fuel": 12.5} and markers["lap3"].end_time == START + 580 * S
    assert set(race.folder_links.values_list("folder_id", flat=True)) == {"silverstone", "tests"}
    assert SessionRef.objects.filter(session=race, kind=RefKind.ANCHOR).count() == 1


def test_markers_another_writer_adds_while_the_page_is_open_are_kept(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    # An ingest adds a lap while the administrator edits one marker and deletes another.
    create_or_update_session("s-race", [("update_markers", [{"id": "lap9", "category": "Laps", "label": "Lap 9"}])])
    for index, row in inline_rows(data, "markers").items():
        if row.get("marker_id") == "lap1":
            data[f"markers-{index}-label"] = "Lap 1 (checked)"
        if row.get("marker_id") == "pit":
            data[f"markers-{index}-DELETE"] = "on"
    response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 302, body(response)
    labels = dict(Marker.objects.filter(session_id="s-race").values_list("marker_id", "label"))
    assert set(labels) == {"lap1", "lap2", "lap9"} and labels["lap1"] == "Lap 1 (checked)"


def test_renaming_a_marker_replaces_it(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    for index, row in inline_rows(data, "markers").items():
        if row.get("marker_id") == "pit":
            data[f"markers-{index}-marker_id"] = "pit-stop"
    response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 302, body(response)
    assert set(Marker.objects.filter(session_id="s-race").values_list("marker_id", flat=True)) == {
        "lap1",
        "lap2",
        "pit-stop",
    }


def test_removing_every_folder_relinks_the_session_to_the_root(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    data["folder_links-0-DELETE"] = "on"
    response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 302, body(response)
    assert list(FolderLink.objects.filter(session_id="s-race").values_list("folder_id", flat=True)) == [ROOT_FOLDER]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("details", '{"Driver": {"first": "Lewis"}}', "details.Driver: dict values are not allowed"),
        ("details", '{"Driver": null}', "details.Driver: null is not allowed"),
        ("details", '{"Driver": [1, 2]}', "details.Driver: list values are not allowed"),
        ("details", "[1, 2]", "details must be an object"),
        ("details", '{"Driver": ', "Enter a valid JSON"),
        (
            "ext_details",
            '{"CarSetup": {"Wing": {"front": 1}}}',
            "extDetails.CarSetup.Wing: dict values are not allowed",
        ),
        ("ext_details", '{"CarSetup": 5}', "extDetails.CarSetup must be an object"),
        ("ext_details", '{"CarSetup": {"Wing": null}}', "extDetails.CarSetup.Wing: null is not allowed"),
    ],
)
def test_invalid_details_show_a_form_error_and_change_nothing(admin_client, sessions, field, value, message):
    before = Session.objects.get(identity="s-race")
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    data["identifier"] = "should not be saved"
    data[field] = value
    with service_spy() as spy:
        response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 200
    html = body(response)
    assert "errornote" in html
    assert message in html.replace("&#x27;", "'")
    assert applied(spy) == []
    after = Session.objects.get(identity="s-race")
    unchanged = (before.identifier, before.details, before.ext_details)
    assert (after.identifier, after.details, after.ext_details) == unchanged


def test_invalid_scalar_values_are_refused(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    data.update({"quality": "1.5", "timestamp_text": "yesterday", "start_time": str(START), "end_time": ""})
    html = body(admin_client.post(change_url("s-race"), data))
    assert "quality 1.5 is outside 0.0-1.0" in html
    assert "is not an ISO 8601 date-time" in html
    assert "Give both ends of the time range" in html
    assert Session.objects.get(identity="s-race").quality == 0.9


def inline_row_html(html, prefix, index):
    """The markup of one tabular inline row (its fields and their errors)."""
    start = html.index(f'id="{prefix}-{index}"')
    return html[start : html.index("</tr>", start)]


def test_invalid_marker_rows_are_refused_by_the_service_rules(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    add_inline_row(data, "markers", marker_id="lap1", label="again", start_time=str(START))
    bad_range = add_inline_row(
        data, "markers", marker_id="bad-range", start_time=str(START + 10 * S), end_time=str(START)
    )
    bad_details = add_inline_row(data, "markers", marker_id="bad-details", start_time=str(START), details="[1]")
    html = body(admin_client.post(change_url("s-race"), data)).replace("&#x27;", "'")
    # The service's messages, each on the row (and field) it names.
    assert "marker 'bad-range' starts after it ends" in inline_row_html(html, "markers", bad_range)
    assert "marker 'bad-details' details must be a JSON object" in inline_row_html(html, "markers", bad_details)
    assert "Please correct the duplicate data for marker_id" in html or "already exists" in html
    assert Marker.objects.filter(session_id="s-race").count() == 3


def test_data_binding_channel_bindings_are_validated(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    add_inline_row(
        data,
        "data_bindings",
        source="kafka",
        identity="stream-1",
        time_ref="0",
        session_time_offset="0",
        channel_bindings='[{"first_data_channel": "x"}]',
    )
    for channel_bindings, message in (
        ('[{"first_data_channel": "x"}]', "first_data_channel must be a non-negative integer"),
        ('[{"first_data_channel": -1}]', "first_data_channel must be a non-negative integer"),
        ('[{"first_channel": 0}]', "unknown keys 'first_channel'"),
        ('[{"first_session_channel": 5, "last_session_channel": 4}]', "last_session_channel 4 is below"),
        ('{"first_data_channel": 0}', "channel bindings must be a list"),
        ("[5]", "channel binding 0 must be an object"),
        ('[{"last_session_channel": true}]', "last_session_channel must be a non-negative integer"),
        ('[{"first_data_channel": 1.5}]', "first_data_channel must be a non-negative integer"),
    ):
        data["data_bindings-0-channel_bindings"] = channel_bindings
        html = body(admin_client.post(change_url("s-race"), data)).replace("&#x27;", "'")
        # The service's message, on the row's channel bindings field.
        row = inline_row_html(html, "data_bindings", 0)
        errors = row[row.index('id="id_data_bindings-0-channel_bindings_error"') :]
        assert message in errors[: errors.index("</ul>")], channel_bindings
    assert not Session.objects.get(identity="s-race").data_bindings.exists()
    data["data_bindings-0-channel_bindings"] = (
        '[{"first_data_channel": 0, "first_session_channel": 10, "last_session_channel": 19}]'
    )
    response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 302, body(response)
    binding = Session.objects.get(identity="s-race").data_bindings.get()
    assert binding.channel_bindings == [
        {"first_data_channel": 0, "first_session_channel": 10, "last_session_channel": 19}
    ]


def field_errors(html, name):
    """The text of the error list shown for the session form's field ``name``."""
    start = html.index(f'id="id_{name}_error"')
    return html[start : html.index("</ul>", start)]


def test_errors_the_service_finds_show_on_the_field_they_name(admin_client, sessions):
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    data.update({"start_time": str(START + 10 * S), "end_time": str(START)})
    with service_spy() as spy:
        response = admin_client.post(change_url("s-race"), data)
    assert response.status_code == 200
    assert f"time range start {START + 10 * S} is after end {START}" in field_errors(body(response), "end_time")
    assert applied(spy) == []
    race = Session.objects.get(identity="s-race")
    assert (race.start_time, race.end_time) == (START, START + 600 * S)


def test_add_session_creates_it_through_the_service(admin_client, db):
    response = admin_client.get(f"{CHANGELIST}add/")
    assert response.status_code == 200
    data = form_data(response, "session_form")
    assert data["identity"]  # a fresh UUID is proposed
    data.update(
        {
            "identity": "s-new",
            "identifier": "",
            "state": "2",
            "timestamp_text": "2024-06-01T10:00:00+02:00",
            "details": '{"Driver": "Russell"}',
            "start_time": str(START),
            "end_time": str(START + 5 * S),
        }
    )
    add_inline_row(data, "markers", marker_id="m1", category="Laps", label="Out lap", start_time=str(START))
    with service_spy() as spy:
        response = admin_client.post(f"{CHANGELIST}add/", data)
    assert response.status_code == 302, body(response)
    assert len(applied(spy)) == 1
    assert applied(spy)[0].kwargs["create"] == {
        "state": 2,
        "timestamp": "2024-06-01T10:00:00+02:00",
        "identifier": "s-new",
    }
    session = Session.objects.get(identity="s-new")
    assert session.details == {"Driver": "Russell"} and session.state == 2
    assert session.timestamp_text == "2024-06-01T10:00:00+02:00"
    assert (session.start_time, session.end_time) == (START, START + 5 * S)
    assert list(session.markers.values_list("marker_id", flat=True)) == ["m1"]
    assert list(session.folder_links.values_list("folder_id", flat=True)) == [ROOT_FOLDER]
    # Adding an identity that exists is refused.
    response = admin_client.post(f"{CHANGELIST}add/", data)
    assert response.status_code == 200 and "already exists" in body(response)


def test_service_rejection_at_save_time_rolls_back_and_reports(admin_client, sessions):
    from rta_core.errors import InvalidArgument

    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    data["identifier"] = "edited"

    def refuse(identity, ops, create=None):
        if identity.startswith(updates.DRY_RUN_PREFIX):
            return create_or_update_session(identity, ops, create=create)
        raise InvalidArgument("updates[0] set_identifier: refused")

    with service_spy(wraps=None, side_effect=refuse):
        response = admin_client.post(change_url("s-race"), data, follow=True)
    assert "Not saved: refused" in body(response)
    assert Session.objects.get(identity="s-race").identifier == "Race Silverstone"


# --- folders ---------------------------------------------------------------------------------


def test_folder_changelist_is_a_tree_with_session_counts(admin_client, sessions):
    response = admin_client.get(FOLDERS)
    assert response.status_code == 200
    html = body(response)
    order = [html.index(text) for text in ("(root)", "Season 2024", "Silverstone", "Test days")]
    assert order == sorted(order)
    assert "padding-left:22px" in html  # Silverstone is indented under Season 2024
    assert re.search(r'href="/admin/sessions_app/session/\?folder=silverstone"[^>]*>1</a>', html)
    assert re.search(r'href="/admin/sessions_app/session/\?folder=season"[^>]*>0</a>', html)
    assert "The root folder cannot be changed or deleted." in html
    # The root has no action checkbox; every other folder has one.
    assert html.count('name="_selected_action"') == Folder.objects.count() - 1


def test_add_and_move_folders_through_put_folder(admin_client, sessions):
    response = admin_client.get(f"{FOLDERS}add/")
    data = form_data(response, "folder_form")
    assert data["parent"] == "f:"  # the root by default
    data.update({"identity": "quali", "label": "Qualifying", "parent": "f:season"})
    with mock.patch("sessions_app.services.folders.put_folder", wraps=folders.put_folder) as spy:
        response = admin_client.post(f"{FOLDERS}add/", data)
    assert response.status_code == 302, body(response)
    # The form dry-runs put_folder first; the save is the last call.
    assert spy.call_args_list[-1] == mock.call("season", "quali", "Qualifying", "")
    assert Folder.objects.get(identity="quali").parent_id == "season"

    # Moving a folder under its own sub-tree is refused.
    response = admin_client.get(f"{FOLDERS}season/change/")
    data = form_data(response, "folder_form")
    parent_options = body(response).split('name="parent"')[1].split("</select>")[0]
    assert "f:silverstone" not in parent_options and 'value="f:tests"' in parent_options
    data["parent"] = "f:silverstone"
    response = admin_client.post(f"{FOLDERS}season/change/", data)
    assert response.status_code == 200
    assert Folder.objects.get(identity="season").parent_id == ROOT_FOLDER

    data["parent"] = "f:tests"
    data["label"] = "Season 2024 (moved)"
    response = admin_client.post(f"{FOLDERS}season/change/", data)
    assert response.status_code == 302, body(response)
    season = Folder.objects.get(identity="season")
    assert (season.parent_id, season.label) == ("tests", "Season 2024 (moved)")


def test_deleting_a_folder_reroots_orphaned_sessions(admin_client, sessions):
    create_or_update_session("s-child", [("set_folders", ["silverstone", "tests"])])
    response = admin_client.get(f"{FOLDERS}season/delete/")
    assert "No session is deleted" in body(response)
    with mock.patch("sessions_app.services.folders.delete_folders", wraps=folders.delete_folders) as spy:
        response = admin_client.post(f"{FOLDERS}season/delete/", {"post": "yes"})
    assert response.status_code == 302
    spy.assert_called_once_with(["season"])
    assert not Folder.objects.filter(identity__in=["season", "silverstone"]).exists()
    assert Session.objects.count() == 3
    # The race was only in the deleted sub-tree: back to the root. The child keeps its other folder.
    assert list(FolderLink.objects.filter(session_id="s-race").values_list("folder_id", flat=True)) == [ROOT_FOLDER]
    assert list(FolderLink.objects.filter(session_id="s-child").values_list("folder_id", flat=True)) == ["tests"]


def test_delete_selected_folders_action_reroots_sessions(admin_client, sessions):
    response = admin_client.post(
        FOLDERS, {"action": "delete_selected", "_selected_action": ["tests"], "post": "yes"}, follow=True
    )
    assert response.status_code == 200
    assert not Folder.objects.filter(identity="tests").exists()
    assert list(FolderLink.objects.filter(session_id="s-practice").values_list("folder_id", flat=True)) == [ROOT_FOLDER]


def test_root_folder_cannot_be_deleted_or_changed(admin_client, sessions, admin_user):
    model_admin = site.get_model_admin(Folder)
    request = RequestFactory().get(FOLDERS)
    request.user = admin_user
    root = Folder.objects.get(identity=ROOT_FOLDER)
    assert model_admin.has_delete_permission(request, root) is False
    assert model_admin.has_change_permission(request, root) is False
    assert model_admin.has_delete_permission(request, Folder.objects.get(identity="tests")) is True

    # Selecting the root for deletion is refused outright.
    response = admin_client.post(FOLDERS, {"action": "delete_selected", "_selected_action": [""], "post": "yes"})
    assert response.status_code == 403
    assert Folder.objects.filter(identity=ROOT_FOLDER).exists()

    # Even if a queryset with the root reaches delete_queryset, the root survives.
    with mock.patch.object(model_admin, "message_user"):
        model_admin.delete_queryset(request, Folder.objects.filter(identity__in=[ROOT_FOLDER, "tests"]))
    assert Folder.objects.filter(identity=ROOT_FOLDER).exists()
    assert not Folder.objects.filter(identity="tests").exists()

    # No form can create or rename the root.
    data = form_data(admin_client.get(f"{FOLDERS}add/"), "folder_form")
    data.update({"identity": "", "label": "new root"})
    response = admin_client.post(f"{FOLDERS}add/", data)
    assert response.status_code == 200
    assert Folder.objects.get(identity=ROOT_FOLDER).label == ""


def test_nul_characters_are_refused_not_crashing(admin_client, sessions):
    assert admin_client.get(CHANGELIST, {"q": "Ham\x00ilton"}).status_code == 200
    response = admin_client.post(
        CHANGELIST, {"action": "move_to_folder", "_selected_action": ["s-practice"], "folder": "f:\x00"}, follow=True
    )
    assert "Choose a folder" in body(response)
    data = form_data(admin_client.get(change_url("s-race")), "session_form")
    data["details"] = '{"Driver": "Ham\\u0000ilton"}'
    response = admin_client.post(change_url("s-race"), data)
    if response.status_code == 200:  # PostgreSQL cannot store NUL: refused by the dry run
        assert "errornote" in body(response)
    else:  # SQLite stores it
        assert response.status_code == 302
    assert Session.objects.get(identity="s-race").details["Driver"] in ("Hamilton", "Ham\x00ilton")
