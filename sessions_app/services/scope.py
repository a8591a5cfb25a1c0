"""Folder-scoped access (spec §15): what a caller's ``Access`` reaches, as SQL conditions.

A folder-restricted access (``Access.folders`` a tuple) reaches the sessions linked to a
folder in the sub-tree of one of its folders; an empty tuple reaches none; ``None`` (auth
off, tokens without the folders claim) reaches everything. ``session_condition`` is the one
place that turns an access into SQL: every query of sessions made for a caller carries it,
so paging, counts and aggregates (the metamodel) stay right, and a session outside the
scope is absent for the caller (404 / NOT_FOUND), never filtered out of a page in Python.

Folders: a restricted caller sees the folders inside its folders' sub-trees and those on
the path from the root down to them (their labels, not their other children), so it can
browse to its folders (``visible_folders_sql``).

Writes (``check_*``): a restricted caller changes only sessions inside its scope, names
only folders inside it, and a session it creates must be put into one of its folders in
the same request; other folders' sessions are refused with PERMISSION_DENIED.
"""

import json

from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.db.models.expressions import RawSQL

from rta_core.errors import NotFound, PermissionDenied, excerpt
from rta_core.identities import is_identity
from sessions_app.models import ROOT_FOLDER, Folder, FolderLink, Session

FOLDER_TABLE = Folder._meta.db_table


def subtree_sql(roots):
    """``(sql, params)``: a SELECT of the identities of the folders ``roots`` and all their descendants."""
    marks = ", ".join(["%s"] * len(roots))
    return (
        f"WITH RECURSIVE tree(identity) AS (SELECT identity FROM {FOLDER_TABLE} WHERE identity IN ({marks}) "
        f"UNION SELECT f.identity FROM {FOLDER_TABLE} f JOIN tree t ON f.parent_id = t.identity) "
        "SELECT identity FROM tree",
        list(roots),
    )


def in_subtrees(roots):
    """A condition on ``Session`` rows: linked to a folder in the sub-tree of one of ``roots`` (a non-empty list)."""
    sql, params = subtree_sql(roots)
    return Exists(FolderLink.objects.filter(session_id=OuterRef("identity"), folder_id__in=RawSQL(sql, params)))


def _roots(access):
    """``access``'s folders that can name a folder (a claim may hold anything; PostgreSQL refuses NUL)."""
    return [f for f in dict.fromkeys(access.folders) if f == ROOT_FOLDER or is_identity(f)]


def session_condition(access):
    """The condition on ``Session`` rows that ``access`` reaches, or ``None`` when it reaches every session."""
    if access.folders is None:
        return None
    roots = _roots(access)
    if not roots:
        return Q(pk__in=[])  # an empty folders claim: nothing (Django answers without a query)
    return in_subtrees(roots)


def session_condition_sql(access, column):
    """``session_condition`` for statements written in SQL: ``(sql, params)`` true when the session identity in
    ``column`` is one ``access`` reaches, or ``None`` when it reaches every session."""
    if access.folders is None:
        return None
    roots = _roots(access)
    if not roots:
        return "1 = 0", []
    tree, params = subtree_sql(roots)
    link = FolderLink._meta.db_table
    return f"EXISTS (SELECT 1 FROM {link} l WHERE l.session_id = {column} AND l.folder_id IN ({tree}))", params


def visible_sessions(access, queryset=None):
    """``queryset`` (default: every session) restricted to what ``access`` reaches."""
    queryset = Session.objects.all() if queryset is None else queryset
    condition = session_condition(access)
    return queryset if condition is None else queryset.filter(condition)


def visible_folders_sql(access):
    """``(sql, params)`` selecting the folders ``access`` may see (sub-trees and the paths to them); ``None``
    when it sees every folder."""
    if access.folders is None:
        return None
    roots = _roots(access)
    if not roots:
        return f"SELECT identity FROM {FOLDER_TABLE} WHERE 1 = 0", []
    marks = ", ".join(["%s"] * len(roots))
    return (
        f"WITH RECURSIVE down(identity) AS (SELECT identity FROM {FOLDER_TABLE} WHERE identity IN ({marks}) "
        f"UNION SELECT f.identity FROM {FOLDER_TABLE} f JOIN down d ON f.parent_id = d.identity), "
        f"up(identity, parent_id) AS (SELECT identity, parent_id FROM {FOLDER_TABLE} WHERE identity IN ({marks}) "
        f"UNION SELECT f.identity, f.parent_id FROM {FOLDER_TABLE} f JOIN up u ON f.identity = u.parent_id) "
        "SELECT identity FROM down UNION SELECT identity FROM up",
        roots + roots,
    )


def folders_within(access, identities):
    """The identities among ``identities`` that are folders inside ``access``'s sub-trees (all when unrestricted)."""
    if access.folders is None:
        return set(identities)
    # Invalid identities name no folder (and PostgreSQL refuses some, such as NUL, as parameters).
    identities = list({i for i in identities if i == ROOT_FOLDER or is_identity(i)})
    roots = _roots(access)
    if not roots or not identities:
        return set()
    sql, params = subtree_sql(roots)
    marks = ", ".join(["%s"] * len(identities))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT identity FROM ({sql}) t WHERE identity IN ({marks})", params + identities)
        return {row[0] for row in cursor.fetchall()}


# --- writes ------------------------------------------------------------------------------------

# Session update ops that name folders (their argument: a list of folder identities).
_FOLDER_OPS = ("set_folders", "update_folders", "delete_folders")


def check_named_folders(access, updates):
    """Every folder the session updates name must be inside ``access``'s sub-trees."""
    if not access.folder_restricted:
        return
    named = [f for op, arg in updates if op in _FOLDER_OPS for f in (arg or ())]
    # Invalid identities are left to the ops, which refuse (or ignore) them as for anyone.
    named = [f for f in dict.fromkeys(named) if f == ROOT_FOLDER or is_identity(f)]
    inside = folders_within(access, named)
    outside = [f for f in named if f not in inside]
    if outside:
        raise PermissionDenied(f"folder {excerpt(outside[0])} is outside the token's folders")


def reaches_session(access, identity):
    """Whether ``access`` reaches the stored session ``identity`` (unrestricted: whether or not it is stored)."""
    if not access.folder_restricted:
        return True
    return is_identity(identity) and visible_sessions(access).filter(identity=identity).exists()


RELATION_LISTS = ("children", "alternates")  # the session JSON's lists of other sessions


def scoped_session_json(access, text):
    """A session JSON document (text, as the live stream sends it) naming only the related sessions ``access``
    reaches, as REST lists them; the text itself when ``access`` is not folder-restricted or it names none."""
    if not access.folder_restricted:
        return text
    document = _document(text)
    related = [i for name in RELATION_LISTS for i in document.get(name) or () if isinstance(i, str)]
    if not related:
        return text
    reached = set(visible_sessions(access).filter(identity__in=related).values_list("identity", flat=True))
    return _with_relations(document, reached)


def without_relations(text):
    """A session JSON document (text) naming no related session (what a restricted caller gets when the
    ones it reaches are not worked out yet)."""
    document = _document(text)
    if not any(name in document for name in RELATION_LISTS):
        return text
    return _with_relations(document, set())


def _document(text):
    """A session JSON text as a dict (one that is not a JSON object names no related session: an empty dict)."""
    try:
        document = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _with_relations(document, kept):
    for name in RELATION_LISTS:
        if name in document:
            document[name] = [i for i in document[name] or () if isinstance(i, str) and i in kept]
            if not document[name]:
                del document[name]
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def check_session_in_scope(access, identity, created=False):
    """Refuse a write to a session outside ``access``'s scope (run with the session row locked).

    ``created``: the session was made by this request, which must have put it into one of the
    token's folders.
    """
    if reaches_session(access, identity):
        return
    if created:
        raise PermissionDenied("a folder-restricted token must put a new session into one of its folders (set_folders)")
    raise PermissionDenied(f"session {excerpt(identity)} is outside the token's folders")


# --- data identities ------------------------------------------------------------------------------


def data_identity_in_scope(access, data_identity):
    """Whether ``access`` reaches a data identity: a session it reaches has that identity or binds it (always,
    when it is not folder-restricted). Data no session has or binds is outside every folder-restricted scope."""
    if not access.folder_restricted:
        return True
    if not is_identity(data_identity):
        return False  # no session has (or binds) an invalid identity
    named = Q(identity=data_identity) | Q(data_bindings__identity=data_identity)
    return visible_sessions(access).filter(named).exists()


def check_data_read(access, data_identity):
    """NotFound for a data identity ``access`` does not reach (DataReader)."""
    if not data_identity_in_scope(access, data_identity):
        raise NotFound(f"data identity {excerpt(data_identity)} not found")


def check_data_write(access, data_identity):
    """PermissionDenied for writing a data identity ``access`` does not reach (DataWriter)."""
    if not data_identity_in_scope(access, data_identity):
        raise PermissionDenied(
            f"data identity {excerpt(data_identity)} is not a session (or bound by one) in the token's folders"
        )


# --- the folder tree ---------------------------------------------------------------------------------


def check_folder_change(access, parent_identity, identity):
    """A restricted caller creates, renames or moves only folders strictly inside its folders' sub-trees
    (under a parent inside them); its own folders stay as they are."""
    if not access.folder_restricted:
        return
    inside = folders_within(access, [parent_identity, identity])
    if parent_identity not in inside:
        raise PermissionDenied(f"parent folder {excerpt(parent_identity)} is outside the token's folders")
    if identity in access.folders or (identity not in inside and Folder.objects.filter(identity=identity).exists()):
        raise PermissionDenied(f"folder {excerpt(identity)} is outside the token's folders")


def deletable_folders(access, identities):
    """The folders of ``identities`` ``access`` may delete: those outside its sub-trees are left alone (as if
    absent); its own folders are refused."""
    identities = list(identities)
    if not access.folder_restricted:
        return identities
    own = [i for i in identities if i in access.folders]
    if own:
        raise PermissionDenied(f"folder {excerpt(own[0])} is one of the token's folders and cannot be deleted")
    inside = folders_within(access, identities)
    return [i for i in identities if i in inside]


__all__ = [
    "check_data_read",
    "check_data_write",
    "data_identity_in_scope",
    "check_folder_change",
    "check_named_folders",
    "check_session_in_scope",
    "deletable_folders",
    "folders_within",
    "in_subtrees",
    "reaches_session",
    "scoped_session_json",
    "session_condition",
    "session_condition_sql",
    "subtree_sql",
    "visible_folders_sql",
    "visible_sessions",
    "without_relations",
]
