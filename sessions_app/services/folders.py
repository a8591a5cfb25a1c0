"""Virtual folders: a tree under the fixed root "", with sessions symbolically linked in."""

from django.db import connection, transaction

from rta_core.errors import InvalidArgument
from sessions_app.models import ROOT_FOLDER, Folder, FolderLink, Session


def root_folder():
    root, _ = Folder.objects.get_or_create(identity=ROOT_FOLDER, defaults={"label": ""})
    return root


def child_folders(parent_identity):
    """Folders directly under ``parent_identity`` with whether each has children (one query)."""
    from django.db.models import Exists, OuterRef

    has_children = Exists(Folder.objects.filter(parent_id=OuterRef("identity")))
    parent = parent_identity or ROOT_FOLDER
    if "\x00" in parent:
        return []
    return list(
        Folder.objects.filter(parent_id=parent).exclude(identity=ROOT_FOLDER).annotate(has_children=has_children)
    )


def put_folder(parent_identity, identity, label="", description=""):
    """Create, rename or move a folder (idempotent). The root cannot be changed."""
    if not isinstance(identity, str) or identity == ROOT_FOLDER:
        raise InvalidArgument("the root folder (empty identity) cannot be created or changed")
    parent_identity = parent_identity or ROOT_FOLDER
    with transaction.atomic():
        root_folder()
        parent = Folder.objects.filter(identity=parent_identity).first()
        if parent is None:
            raise InvalidArgument(f"parent folder {parent_identity!r} does not exist")
        if identity in _ancestors(parent_identity):
            raise InvalidArgument(f"folder {identity!r} cannot be moved under its own sub-tree")
        folder, _ = Folder.objects.update_or_create(
            identity=identity, defaults={"parent": parent, "label": label or "", "description": description or ""}
        )
    return folder


def _ancestors(identity):
    chain, seen = [], set()
    node = Folder.objects.filter(identity=identity).values_list("identity", "parent_id").first()
    while node and node[0] not in seen:
        seen.add(node[0])
        chain.append(node[0])
        if node[1] is None:
            break
        node = Folder.objects.filter(identity=node[1]).values_list("identity", "parent_id").first()
    return chain


def subtree_identities(identity):
    """The identities of a folder and all its descendants (one recursive query)."""
    if "\x00" in identity:
        return []  # no folder identity can hold NUL (PostgreSQL text cannot store it)
    table = Folder._meta.db_table
    sql = (
        f"WITH RECURSIVE tree(identity) AS (SELECT identity FROM {table} WHERE identity = %s "
        f"UNION SELECT f.identity FROM {table} f JOIN tree t ON f.parent_id = t.identity) "
        "SELECT identity FROM tree"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [identity])
        return [row[0] for row in cursor.fetchall()]


def delete_folders(identities):
    """Delete folders and their sub-trees; sessions left in no folder are linked to the root."""
    identities = list(identities)
    if ROOT_FOLDER in identities:
        raise InvalidArgument("the root folder cannot be deleted")
    with transaction.atomic():
        doomed = set()
        for identity in identities:
            doomed.update(subtree_identities(identity))
        if not doomed:
            return 0
        affected = list(FolderLink.objects.filter(folder_id__in=doomed).values_list("session_id", flat=True).distinct())
        _, deleted = Folder.objects.filter(identity__in=doomed).delete()
        relink_orphans(affected)
    # delete() counts the cascaded session links too.
    return deleted.get(Folder._meta.label, 0)


def relink_orphans(session_identities):
    """Link every session in ``session_identities`` that is in no folder to the root."""
    root = root_folder()
    orphans = Session.objects.filter(identity__in=session_identities, folder_links__isnull=True)
    FolderLink.objects.bulk_create([FolderLink(session=s, folder=root) for s in orphans], ignore_conflicts=True)
