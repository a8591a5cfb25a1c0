"""Virtual folders (spec §5): the tree, moves, deletes, and folder-scoped listings."""

import pytest

from rta_core.errors import InvalidArgument
from sessions_app.models import ROOT_FOLDER, Folder, FolderLink, Session
from sessions_app.services.folders import child_folders, delete_folders, put_folder, subtree_identities
from sessions_app.services.listing import list_sessions
from sessions_app.services.updates import create_or_update_session
from tests.factories import make_session

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]

FOLDERS = "/rta/v2/session-folders/"


@pytest.fixture
def tree(db):
    """root ── teams ── team-a ── team-a/2024
    │      └─ team-b
    └─ archive
    """
    put_folder("", "teams", "Teams", "All teams")
    put_folder("teams", "team-a", "Team A")
    put_folder("team-a", "team-a/2024", "2024")
    put_folder("teams", "team-b", "Team B")
    put_folder(ROOT_FOLDER, "archive", "Archive")
    make_session("in-root", timestamp="2024-01-01T00:00:00Z")
    make_session("in-a", timestamp="2024-01-02T00:00:00Z", folders=["team-a"])
    make_session("in-a-2024", timestamp="2024-01-03T00:00:00Z", folders=["team-a/2024"])
    make_session("in-b", timestamp="2024-01-04T00:00:00Z", folders=["team-b"])
    make_session("in-b-and-archive", timestamp="2024-01-05T00:00:00Z", folders=["team-b", "archive"])


def scoped(folder):
    return sorted(s.identity for s in list_sessions(folder=folder))


def links(identity):
    return sorted(FolderLink.objects.filter(session_id=identity).values_list("folder_id", flat=True))


def test_folder_scope_includes_the_whole_sub_tree(tree):
    assert scoped("team-a/2024") == ["in-a-2024"]
    assert scoped("team-a") == ["in-a", "in-a-2024"]
    assert scoped("teams") == ["in-a", "in-a-2024", "in-b", "in-b-and-archive"]
    assert scoped("archive") == ["in-b-and-archive"]
    assert scoped("") == scoped(None) == ["in-a", "in-a-2024", "in-b", "in-b-and-archive", "in-root"]
    assert scoped("no-such-folder") == []
    assert sorted(subtree_identities("teams")) == ["team-a", "team-a/2024", "team-b", "teams"]


def test_folder_scope_combines_with_query_sort_and_paging(tree):
    page = list_sessions(folder="teams", query={"identity": {"$startsWith": "in-b"}}, sorts=["timestamp:asc"])
    assert [s.identity for s in page] == ["in-b", "in-b-and-archive"]
    page = list_sessions(folder="teams", page_index=1, page_size=3)
    assert [s.identity for s in page] == ["in-a"]


def test_rest_listing_is_scoped_by_folder(api, tree):
    response = api.get("/rta/v2/sessions", {"folder": "team-a"})
    assert [s["identity"] for s in response.json()["sessions"]] == ["in-a-2024", "in-a"]
    response = api.post("/rta/v2/sessions", {"folder": "teams", "query": '{"identity": {"$endsWith": "archive"}}'})
    assert [s["identity"] for s in response.json()["sessions"]] == ["in-b-and-archive"]


def test_sub_sessions_are_hidden_in_folder_listings_too(tree):
    make_session("parent", folders=["team-b"], anchors=["guid:p"])
    make_session("child", folders=["team-b"], child_of=["guid:p"])
    assert "child" not in scoped("team-b")
    assert "parent" in scoped("team-b")
    assert "child" in [s.identity for s in list_sessions(folder="team-b", include_sub_sessions=True)]


# --- GET /session-folders ------------------------------------------------------------------------


def test_root_folders_over_rest(api, tree):
    response = api.get(FOLDERS)
    assert response.status_code == 200
    assert response.json() == [
        {"identity": "archive", "label": "Archive", "description": "", "hasChildren": False},
        {"identity": "teams", "label": "Teams", "description": "All teams", "hasChildren": True},
    ]


def test_child_folders_over_rest(api, tree):
    assert api.get(FOLDERS + "teams").json() == [
        {"identity": "team-a", "label": "Team A", "description": "", "hasChildren": True},
        {"identity": "team-b", "label": "Team B", "description": "", "hasChildren": False},
    ]
    assert api.get(FOLDERS + "team-a").json() == [
        {"identity": "team-a/2024", "label": "2024", "description": "", "hasChildren": False},
    ]
    assert api.get(FOLDERS + "team-a/2024").json() == []
    assert api.get(FOLDERS + "no-such-folder").json() == []


def test_folders_are_ordered_by_label(db):
    put_folder("", "z", "Alpha")
    put_folder("", "a", "Zulu")
    assert [f.identity for f in child_folders("")] == ["z", "a"]


# --- put_folder: create, rename, move ------------------------------------------------------------


def test_put_folder_creates_renames_and_is_idempotent(tree):
    put_folder("teams", "team-b", "Team Bee", "renamed")
    put_folder("teams", "team-b", "Team Bee", "renamed")
    folder = Folder.objects.get(identity="team-b")
    assert (folder.parent_id, folder.label, folder.description) == ("teams", "Team Bee", "renamed")
    assert Folder.objects.filter(identity="team-b").count() == 1
    assert scoped("team-b") == ["in-b", "in-b-and-archive"]


def test_moving_a_folder_moves_its_sub_tree_and_sessions(api, tree):
    put_folder("archive", "team-a", "Team A")
    assert Folder.objects.get(identity="team-a").parent_id == "archive"
    assert scoped("teams") == ["in-b", "in-b-and-archive"]
    assert scoped("archive") == ["in-a", "in-a-2024", "in-b-and-archive"]
    assert scoped("team-a") == ["in-a", "in-a-2024"]
    assert [f["identity"] for f in api.get(FOLDERS + "archive").json()] == ["team-a"]
    assert api.get(FOLDERS).json()[0] == {
        "identity": "archive",
        "label": "Archive",
        "description": "",
        "hasChildren": True,
    }
    # Moving back to the root (empty parent).
    put_folder("", "team-a", "Team A")
    assert [f.identity for f in child_folders("")] == ["archive", "team-a", "teams"]


@pytest.mark.parametrize(
    "parent,identity,fragment",
    [
        ("team-a/2024", "teams", "sub-tree"),
        ("team-a", "teams", "sub-tree"),
        ("team-a", "team-a", "sub-tree"),
        ("", "", "root"),
        ("teams", ROOT_FOLDER, "root"),
        ("missing", "new", "missing"),
    ],
)
def test_put_folder_refusals(tree, parent, identity, fragment):
    with pytest.raises(InvalidArgument) as exc:
        put_folder(parent, identity, "x")
    assert fragment in exc.value.message
    assert Folder.objects.get(identity="teams").parent_id == ROOT_FOLDER
    assert Folder.objects.get(identity=ROOT_FOLDER).parent_id is None
    assert not Folder.objects.filter(identity="new").exists()


# --- delete_folders ------------------------------------------------------------------------------


def test_deleting_a_folder_deletes_its_sub_tree_but_never_sessions(tree):
    count = delete_folders(["team-a"])
    assert count == 2
    assert not Folder.objects.filter(identity__in=["team-a", "team-a/2024"]).exists()
    assert Session.objects.count() == 5
    # Orphaned sessions are re-linked to the root.
    assert links("in-a") == [ROOT_FOLDER]
    assert links("in-a-2024") == [ROOT_FOLDER]
    assert scoped("teams") == ["in-b", "in-b-and-archive"]


def test_deleting_a_folder_keeps_other_links(tree):
    delete_folders(["teams"])
    assert links("in-b-and-archive") == ["archive"]
    assert links("in-b") == [ROOT_FOLDER]
    assert links("in-root") == [ROOT_FOLDER]
    assert Session.objects.count() == 5
    assert [f.identity for f in child_folders("")] == ["archive"]


def test_deleting_several_folders_and_missing_ones(tree):
    assert delete_folders(["archive", "team-b", "missing"]) == 2
    assert links("in-b-and-archive") == [ROOT_FOLDER]
    assert delete_folders(["missing"]) == 0
    assert Session.objects.count() == 5


def test_the_root_cannot_be_deleted(tree):
    with pytest.raises(InvalidArgument) as exc:
        delete_folders(["team-b", ROOT_FOLDER])
    assert "root" in exc.value.message
    assert Folder.objects.filter(identity__in=[ROOT_FOLDER, "team-b"]).count() == 2
    assert Session.objects.count() == 5


def test_re_linked_sessions_can_be_filed_again(tree):
    delete_folders(["team-b"])
    create_or_update_session("in-b", [("set_folders", ["archive"])])
    assert links("in-b") == ["archive"]
    assert scoped("archive") == ["in-b", "in-b-and-archive"]
