"""Small service-layer helpers the Django admin needs on top of updates / folders.

Nothing here writes around the service layer: edits are still applied by
``updates.create_or_update_session`` and ``folders.put_folder`` /
``folders.delete_folders``. What this module adds is

* ``check_ops`` / ``check_folder``: a dry run of a change inside a savepoint
  that is always rolled back, so the admin can show the service's own
  validation messages as form errors before anything is saved;
* bulk helpers for admin actions (close sessions, link or move to a folder);
* read helpers for the folder tree (depth-first order, paths, session counts).
"""

import re
import uuid

from django.db import DataError, IntegrityError, transaction
from django.db.models import Count

from rta_core.errors import InvalidArgument
from sessions_app.models import ROOT_FOLDER, Folder, FolderLink, RefKind, SessionRef, SessionState
from sessions_app.services import folders, updates

_OP_PREFIX = re.compile(r"^updates\[\d+\] \w+: ")


class _RolledBack(Exception):
    """Raised inside a dry run's savepoint to undo everything it did."""


def service_message(exc):
    """The message of an InvalidArgument without the ``updates[i] op:`` prefix."""
    return _OP_PREFIX.sub("", getattr(exc, "message", str(exc)))


def _dry_run(apply):
    try:
        with transaction.atomic():
            apply()
            raise _RolledBack
    except _RolledBack:
        pass
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # Shapes the service does not expect (e.g. a list where an object belongs).
        raise InvalidArgument(f"malformed value: {exc}") from None
    except (DataError, IntegrityError) as exc:
        # The savepoint is rolled back; report what the database refused.
        raise InvalidArgument(f"the database refused the change: {str(exc).splitlines()[0]}") from None


def check_ops(ops, create=None, identity=None):
    """Validate ``ops`` exactly as ``create_or_update_session`` would, then roll back.

    The ops are applied to a throw-away session (or ``identity``) in a savepoint that is
    always rolled back. Raises ``InvalidArgument`` with the service's message.
    """
    identity = identity or f"admin-dry-run-{uuid.uuid4()}"
    _dry_run(lambda: updates.create_or_update_session(identity, ops, create=create))


def check_folder(parent_identity, identity, label="", description=""):
    """Validate a ``put_folder`` call (cycles, missing parent, the root) and roll back."""
    _dry_run(lambda: folders.put_folder(parent_identity, identity, label, description))


def apply_session_edit(identity, ops, create=None):
    """One CreateOrUpdateSession call for an admin edit (one transaction)."""
    return updates.create_or_update_session(identity, ops, create=create)


def close_sessions(identities):
    """Set every session that is not already in a closed state to ``closed``.

    Returns ``(closed, already_closed)`` counts. One transaction for the batch.
    """
    from sessions_app.models import Session

    closed = already = 0
    with transaction.atomic():
        states = dict(Session.objects.filter(identity__in=list(identities)).values_list("identity", "state"))
        for identity, state in states.items():
            if state >= SessionState.CLOSED:
                already += 1
                continue
            updates.create_or_update_session(identity, [("set_state", int(SessionState.CLOSED))])
            closed += 1
    return closed, already


def link_sessions(identities, folder_identity, move=False):
    """Link sessions into a folder (``update_folders``), or move them there (``set_folders``)."""
    op = "set_folders" if move else "update_folders"
    count = 0
    with transaction.atomic():
        for identity in identities:
            updates.create_or_update_session(identity, [(op, [folder_identity])])
            count += 1
    return count


# --- folder tree ---------------------------------------------------------------------------


class TreeNode:
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


def folder_session_counts():
    """``{folder identity: number of sessions linked directly}`` in one aggregate query."""
    return dict(FolderLink.objects.values("folder_id").annotate(n=Count("id")).values_list("folder_id", "n"))


def related_sessions(identity):
    """Sessions that declare ``child_of`` / ``alternate_of`` refs to this session's anchors, and
    the sessions whose anchors this session's refs point at. Returns a dict of kind -> identities."""
    anchors = list(SessionRef.objects.filter(session_id=identity, kind=RefKind.ANCHOR).values_list("uri", flat=True))
    out = {"children": [], "alternates": [], "parents": []}
    if anchors:
        refs = (
            SessionRef.objects.filter(uri__in=anchors, kind__in=[RefKind.CHILD_OF, RefKind.ALTERNATE_OF])
            .exclude(session_id=identity)
            .values_list("kind", "session_id")
            .order_by("session_id")
        )
        for kind, session_id in refs:
            key = "children" if kind == RefKind.CHILD_OF else "alternates"
            if session_id not in out[key]:
                out[key].append(session_id)
    own = list(
        SessionRef.objects.filter(session_id=identity, kind__in=[RefKind.CHILD_OF, RefKind.ALTERNATE_OF]).values_list(
            "uri", flat=True
        )
    )
    if own:
        out["parents"] = sorted(
            set(
                SessionRef.objects.filter(uri__in=own, kind=RefKind.ANCHOR)
                .exclude(session_id=identity)
                .values_list("session_id", flat=True)
            )
        )
    return out
