"""Listing, querying and fetching sessions; relationships resolved from anchors at read time."""

from collections import defaultdict

from django.conf import settings
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from rta_core.access import Access
from rta_core.errors import InvalidArgument, NotFound, excerpt
from rta_core.identities import is_identity
from sessions_app.models import ROOT_FOLDER, FolderLink, RefKind, SessionRef
from sessions_app.query.compiler import compile_query
from sessions_app.query.properties import TABLE
from sessions_app.query.sorting import order_by
from sessions_app.services import scope
from sessions_app.services.folders import subtree_identities

REF_TABLE = SessionRef._meta.db_table
# SQL OFFSET/LIMIT are int64: a page past that holds no sessions.
MAX_ROW = 2**63 - 1

# A session is a sub-session when one of its child_of / alternate_of refs names an
# anchor that another session publishes: resolved at read time, so order of arrival is free.
_SUB_SESSION_SQL = (
    f"EXISTS (SELECT 1 FROM {REF_TABLE} r JOIN {REF_TABLE} a "
    f"ON a.uri = r.uri AND a.kind = '{RefKind.ANCHOR.value}' AND a.session_id <> r.session_id "
    f'WHERE r.session_id = "{TABLE}"."identity" '
    f"AND r.kind IN ('{RefKind.CHILD_OF.value}', '{RefKind.ALTERNATE_OF.value}'))"
)


def _condition(sql, params=()):
    return RawSQL(sql, list(params), output_field=BooleanField())


def scoped_sessions(folder=None, include_sub_sessions=True, access=Access.ANONYMOUS_FULL):
    """Sessions in a folder's sub-tree (all sessions for the root or no folder) that ``access`` reaches."""
    qs = scope.visible_sessions(access)
    if folder is not None and not isinstance(folder, str):
        raise InvalidArgument("folder must be a string")
    if folder not in (None, ROOT_FOLDER):
        folders = subtree_identities(folder)
        qs = qs.filter(identity__in=FolderLink.objects.filter(folder_id__in=folders).values("session_id"))
    if not include_sub_sessions:
        qs = qs.exclude(_sub_session_condition(access))
    return qs


def _sub_session_condition(access):
    """Sub-sessions of sessions ``access`` reaches: a session whose parent is outside the scope is listed itself."""
    parent = scope.session_condition_sql(access, "a.session_id")
    if parent is None:
        return _condition(_SUB_SESSION_SQL)
    # _SUB_SESSION_SQL ends with the closing parenthesis of its EXISTS.
    return _condition(f"{_SUB_SESSION_SQL[:-1]} AND {parent[0]})", parent[1])


def check_paging(page_index, page_size):
    for name, value in (("pageIndex", page_index), ("pageSize", page_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidArgument(f"{name} must be a non-negative integer")
    if page_size is not None and page_size > settings.RTA_MAX_PAGE_SIZE:
        raise InvalidArgument(f"pageSize must not exceed {settings.RTA_MAX_PAGE_SIZE}")


def list_sessions(
    query=None,
    folder=None,
    sorts=(),
    page_index=0,
    page_size=None,
    include_sub_sessions=False,
    access=Access.ANONYMOUS_FULL,
):
    """One page of sessions matching ``query`` (a parsed criteria object), sorted and paged in SQL.

    Without a page size the page holds up to RTA_MAX_PAGE_SIZE sessions. Only sessions ``access``
    reaches are listed (in the query, so pages stay full and in order).
    """
    page_index = page_index or 0
    check_paging(page_index, page_size)
    size = settings.RTA_MAX_PAGE_SIZE if page_size is None else page_size
    qs = scoped_sessions(folder, include_sub_sessions, access)
    sql, params = compile_query(query)
    if sql:
        qs = qs.filter(_condition(sql, params))
    qs = qs.order_by(*order_by(sorts)).prefetch_related("markers", "config_bindings")
    start = page_index * size
    if not size or start + size > MAX_ROW:
        return []
    return list(qs[start : start + size])


def get_session(identity, access=Access.ANONYMOUS_FULL):
    """The session, with markers and config bindings; NotFound when absent or outside ``access``'s folders."""
    if not is_identity(identity):
        raise NotFound(f"session {excerpt(identity)} not found")  # no session has an invalid identity
    qs = scope.visible_sessions(access).filter(identity=identity)
    session = qs.prefetch_related("markers", "config_bindings").first()
    if session is None:
        raise NotFound(f"session {excerpt(identity)} not found")
    return session


def related_sessions(identities, parents=False, access=Access.ANONYMOUS_FULL):
    """``{identity: {"children": [...], "alternates": [...]}}`` for the sessions of ``identities``.

    Children and alternates are the sessions whose ``child_of`` / ``alternate_of`` refs name an anchor the
    session publishes. With ``parents``, each entry also holds ``"parents"``: the sessions publishing the
    anchors the session's own refs name. Every list is in timestamp order (then identity) and holds only
    sessions ``access`` reaches. Sessions with no relation are absent (``.get`` gives None).
    """
    identities = list(identities)
    out = defaultdict(lambda: {"children": [], "alternates": [], **({"parents": []} if parents else {})})
    anchors = SessionRef.objects.filter(session_id__in=identities, kind=RefKind.ANCHOR).values_list("session_id", "uri")
    _add_relations(out, anchors, {RefKind.CHILD_OF: "children", RefKind.ALTERNATE_OF: "alternates"}, access)
    if parents:
        refs = SessionRef.objects.filter(
            session_id__in=identities, kind__in=[RefKind.CHILD_OF, RefKind.ALTERNATE_OF]
        ).values_list("session_id", "uri")
        _add_relations(out, refs, {RefKind.ANCHOR: "parents"}, access)
    return out


def _add_relations(out, own_refs, lists, access):
    """Add to ``out[session]`` the other sessions ``access`` reaches holding a ref of a kind in ``lists`` to a URI
    of ``own_refs`` (``(session, uri)`` pairs), under ``lists[kind]``."""
    owners = defaultdict(set)
    for owner, uri in own_refs:
        owners[uri].add(owner)
    if not owners:
        return
    refs = SessionRef.objects.filter(uri__in=list(owners), kind__in=list(lists))
    if access.folder_restricted:
        refs = refs.filter(session__in=scope.visible_sessions(access).values("identity"))
    refs = refs.order_by("session__timestamp_ns", "session_id").values_list("session_id", "kind", "uri")
    for other, kind, uri in refs:
        for owner in owners[uri]:
            if owner == other:
                continue
            target = out[owner][lists[kind]]
            if other not in target:
                target.append(other)
