"""Virtual folders: a tree under the fixed root "", with sessions symbolically linked in."""

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.db.models.expressions import RawSQL

from rta_core.access import Access
from rta_core.errors import InvalidArgument, excerpt
from rta_core.identities import is_identity, validate_identity
from sessions_app.models import ROOT_FOLDER, Folder, FolderLink, Session
from sessions_app.services import dry_run, scope, updates


def root_folder():
    root, _ = Folder.objects.get_or_create(identity=ROOT_FOLDER, defaults={"label": ""})
    return root


def child_folders(parent_identity, access=Access.ANONYMOUS_FULL):
    """Folders directly under ``parent_identity`` with whether each has children (one query).

    A folder-restricted ``access`` sees only the folders inside its folders' sub-trees and those on
    the way to them (``scope.visible_folders_sql``); ``has_children`` counts those only.
    """
    parent = parent_identity or ROOT_FOLDER
    if parent != ROOT_FOLDER and not is_identity(parent):
        return []  # no folder has an invalid identity
    children = Folder.objects.filter(parent_id=OuterRef("identity"))
    folders = Folder.objects.filter(parent_id=parent).exclude(identity=ROOT_FOLDER)
    visible = scope.visible_folders_sql(access)
    if visible is not None:
        children = children.filter(identity__in=RawSQL(*visible))
        folders = folders.filter(identity__in=RawSQL(*visible))
    return list(folders.annotate(has_children=Exists(children)))


def put_folder(parent_identity, identity, label="", description="", access=Access.ANONYMOUS_FULL):
    """Create, rename or move a folder (idempotent). The root cannot be changed.

    A folder-restricted ``access`` changes only folders inside its folders' sub-trees (``scope``).
    """
    if not isinstance(identity, str) or identity == ROOT_FOLDER:
        raise InvalidArgument("the root folder (empty identity) cannot be created or changed")
    validate_identity(identity, "folder identity")
    parent_identity = parent_identity or ROOT_FOLDER
    if parent_identity != ROOT_FOLDER:
        validate_identity(parent_identity, "parent folder identity")
    with transaction.atomic():
        scope.check_folder_change(access, parent_identity, identity)
        root_folder()
        parent = Folder.objects.filter(identity=parent_identity).first()
        if parent is None:
            raise InvalidArgument(f"parent folder {excerpt(parent_identity)} does not exist")
        if identity in _ancestors(parent_identity):
            raise InvalidArgument(f"folder {excerpt(identity)} cannot be moved under its own sub-tree")
        folder, _ = Folder.objects.update_or_create(
            identity=identity, defaults={"parent": parent, "label": label or "", "description": description or ""}
        )
    return folder


def check_folder(parent_identity, identity, label="", description=""):
    """Raise what ``put_folder`` would raise (cycles, a missing parent, the root), keeping nothing."""
    dry_run.run(lambda: put_folder(parent_identity, identity, label, description))


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
    if identity != ROOT_FOLDER and not is_identity(identity):
        return []  # no folder has an invalid identity
    with connection.cursor() as cursor:
        cursor.execute(*scope.subtree_sql([identity]))
        return [row[0] for row in cursor.fetchall()]


def delete_folders(identities, access=Access.ANONYMOUS_FULL):
    """Delete folders and their sub-trees; sessions left in no folder are linked to the root.

    A folder-restricted ``access`` deletes only folders inside its folders' sub-trees (others are left
    alone, as if absent); deleting one of its own folders is refused.
    """
    identities = list(identities)
    if ROOT_FOLDER in identities:
        raise InvalidArgument("the root folder cannot be deleted")
    with transaction.atomic():
        identities = scope.deletable_folders(access, identities)
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


def link_sessions(identities, folder_identity, move=False):
    """Link sessions into a folder (``update_folders``), or move them there (``set_folders``), in one transaction.

    Returns how many sessions were linked.
    """
    op = "set_folders" if move else "update_folders"
    count = 0
    with transaction.atomic():
        for identity in identities:
            updates.create_or_update_session(identity, [(op, [folder_identity])])
            count += 1
    return count


# --- the tree as a whole ---------------------------------------------------------------------


class TreeNode:
    """One folder in ``folder_tree``: its depth (the root's children have 1), path of names, and position."""

    __slots__ = ("identity", "parent_id", "label", "depth", "path", "position", "has_children")

    def __init__(self, identity, parent_id, label):
        self.identity, self.parent_id, self.label = identity, parent_id, label
        self.depth, self.path, self.position, self.has_children = 0, "", 0, False

    @property
    def name(self):
        return self.label or self.identity or "(root)"


def folder_tree():
    """Every folder in depth-first order (children sorted by label, identity), with depth and path.

    Returns ``{identity: TreeNode}`` in that order; the root (when present) comes first with depth 0
    and its children have depth 1. Folders unreachable from the root (should not happen) follow.
    """
    rows = list(Folder.objects.values_list("identity", "parent_id", "label"))
    nodes = {identity: TreeNode(identity, parent, label) for identity, parent, label in rows}
    children = {}
    for node in nodes.values():
        if node.identity != ROOT_FOLDER:
            children.setdefault(node.parent_id, []).append(node)
    for kids in children.values():
        kids.sort(key=lambda n: (n.label.lower(), n.identity))
    ordered = {}

    def visit(start, depth, path):
        stack = [(start, depth, path)]
        while stack:
            node, depth, path = stack.pop()
            if node.identity in ordered:
                continue
            node.depth, node.path, node.position = depth, path, len(ordered)
            node.has_children = bool(children.get(node.identity))
            ordered[node.identity] = node
            for child in reversed(children.get(node.identity, [])):
                stack.append((child, depth + 1, f"{path} / {child.name}" if path else child.name))

    if ROOT_FOLDER in nodes:
        visit(nodes[ROOT_FOLDER], 0, "")
    for node in sorted(nodes.values(), key=lambda n: (n.label.lower(), n.identity)):
        if node.identity not in ordered:
            visit(node, 1, node.name)
    return ordered
