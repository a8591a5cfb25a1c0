"""Listing, querying and fetching sessions; relationships resolved from anchors at read time."""

from collections import defaultdict

from django.conf import settings
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from rta_core.errors import InvalidArgument, NotFound
from sessions_app.models import ROOT_FOLDER, FolderLink, RefKind, Session, SessionRef
from sessions_app.query.compiler import compile_query
from sessions_app.query.properties import TABLE
from sessions_app.query.sorting import order_by
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


def scoped_sessions(folder=None, include_sub_sessions=True):
    """Sessions in a folder's sub-tree (all sessions for the root or no folder)."""
    qs = Session.objects.all()
    if folder is not None and not isinstance(folder, str):
        raise InvalidArgument("folder must be a string")
    if folder not in (None, ROOT_FOLDER):
        folders = subtree_identities(folder)
        qs = qs.filter(identity__in=FolderLink.objects.filter(folder_id__in=folders).values("session_id"))
    if not include_sub_sessions:
        qs = qs.exclude(_condition(_SUB_SESSION_SQL))
    return qs


def check_paging(page_index, page_size):
    for name, value in (("pageIndex", page_index), ("pageSize", page_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidArgument(f"{name} must be a non-negative integer")
    if page_size is not None and page_size > settings.RTA_MAX_PAGE_SIZE:
        raise InvalidArgument(f"pageSize must not exceed {settings.RTA_MAX_PAGE_SIZE}")


def list_sessions(query=None, folder=None, sorts=(), page_index=0, page_size=None, include_sub_sessions=False):
    """One page of sessions matching ``query`` (a parsed criteria object), sorted and paged in SQL.

    Without a page size the page holds up to RTA_MAX_PAGE_SIZE sessions.
    """
    page_index = page_index or 0
    check_paging(page_index, page_size)
    size = settings.RTA_MAX_PAGE_SIZE if page_size is None else page_size
    qs = scoped_sessions(folder, include_sub_sessions)
    sql, params = compile_query(query)
    if sql:
        qs = qs.filter(_condition(sql, params))
    qs = qs.order_by(*order_by(sorts)).prefetch_related("markers", "config_bindings")
    start = page_index * size
    if not size or start + size > MAX_ROW:
        return []
    return list(qs[start : start + size])


def get_session(identity):
    if "\x00" in identity:
        # No session identity can hold NUL (PostgreSQL text cannot store it).
        raise NotFound(f"session {identity!r} not found")
    session = Session.objects.filter(identity=identity).prefetch_related("markers", "config_bindings").first()
    if session is None:
        raise NotFound(f"session {identity!r} not found")
    return session


def related_sessions(identities):
    """``{identity: {"children": [...], "alternates": [...]}}`` for sessions publishing anchors."""
    anchors = list(
        SessionRef.objects.filter(session_id__in=list(identities), kind=RefKind.ANCHOR).values_list("session_id", "uri")
    )
    out = defaultdict(lambda: {"children": [], "alternates": []})
    if not anchors:
        return out
    owners = defaultdict(set)
    for owner, uri in anchors:
        owners[uri].add(owner)
    refs = (
        SessionRef.objects.filter(uri__in=list(owners), kind__in=[RefKind.CHILD_OF, RefKind.ALTERNATE_OF])
        .order_by("session__timestamp_ns", "session_id")
        .values_list("session_id", "kind", "uri")
    )
    for child, kind, uri in refs:
        for owner in owners[uri]:
            if owner == child:
                continue
            target = out[owner]["children" if kind == RefKind.CHILD_OF else "alternates"]
            if child not in target:
                target.append(child)
    return out
