"""CreateOrUpdateSession: the one place that creates sessions and applies updates.

Callers (gRPC, the Kafka ingest, the admin, demo loaders) describe changes as
a list of ``(op, argument)`` pairs named after the gRPC ``SessionUpdate``
ops. Everything in one call is applied in order inside one transaction with
the session row locked, so an invalid op leaves the session untouched and
concurrent merges from several connections never lose each other's keys.

The hot path of live ingest (an existing session, ops that only change its
row or upsert markers) takes no lock on PostgreSQL: the ops are applied to
the row as read, or as this process last wrote it (``session_rows.RECENT``), and one
statement writes the row and the markers only if the stored row is still that
version (its ``xmin``); if not, the call is applied again to a fresh read,
then under the lock. A live update is then one statement (two when the row
must be read) instead of BEGIN, SELECT FOR UPDATE, INSERT, UPDATE and COMMIT.
The same ops apply the rules on every path; the row and marker SQL is built
once per vendor instead of being compiled by the ORM on every call.
"""

import contextlib
import copy
import functools
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from rta_core.access import Access
from rta_core.errors import InvalidArgument, excerpt
from rta_core.identities import is_identity, validate_identity
from rta_core.timeutil import now_timestamp, parse_timestamp
from sessions_app import signals
from sessions_app.models import (
    ROOT_FOLDER,
    ConfigBinding,
    DataBinding,
    Folder,
    FolderLink,
    Marker,
    RefKind,
    Session,
    SessionRef,
    SessionState,
)
from sessions_app.services import dry_run, scope, session_rows, values


class SessionChange:
    """State of one CreateOrUpdateSession call while its ops are applied."""

    def __init__(self, db, session, created, defer_writes=False):
        self.db = db  # the database connection (looked up once: each lookup goes through a thread local)
        self.session = session
        self.created = created
        # Set by ops that can unlink the session from folders (it may then need the root).
        self.unlinked = False
        # Unlocked path: statements ops issue wait for the guarded row write, which carries them.
        self.deferred = [] if defer_writes else None

    def write(self, sql, params):
        """Run a statement now, or keep it for the row write. ``sql(guard)`` gives its text (``marker_upsert``)."""
        if self.deferred is None:
            with session_rows.cursor_for(self.db) as cursor:
                cursor.execute(sql(None), params)
        else:
            self.deferred.append((sql, params))


def close_ops(state):
    """The ops that close a session now in ``state``: none when it is already in a closed state.

    A truncated, failed or abandoned session says more than "closed" and keeps its state.
    """
    return [] if SessionState.is_closed(state) else [("set_state", int(SessionState.CLOSED))]


def create_or_update_session(identity, updates=(), create=None, sequence=None, access=Access.ANONYMOUS_FULL):
    """Create the session if absent (from ``create``), then apply ``updates`` in order.

    ``create`` is a dict with optional ``state``, ``timestamp`` and ``identifier``.
    ``sequence``, when given, must be greater than the last applied sequence or the
    whole request is skipped (safe replay). Returns True when applied. A folder-restricted
    ``access`` writes only sessions inside its folders (``scope``), checked with the row locked.
    """
    validate_identity(identity, "session identity")
    updates = list(updates)
    for op, _ in updates:
        if op not in OPS:
            raise InvalidArgument(f"unknown session update operation {excerpt(op)}")
    scope.check_named_folders(access, updates)
    db = transaction.get_connection()
    if not access.folder_restricted and _unlocked_applies(db, updates):
        outside_transaction = db.get_autocommit()
        # In a caller's transaction, a savepoint keeps a refused write from aborting it (as on the locked path).
        with contextlib.nullcontext() if outside_transaction else transaction.atomic():
            applied = _update_unlocked(db, identity, updates, sequence, outside_transaction)
        if applied is not None:
            return applied
    with transaction.atomic():
        with session_rows.cursor_for(db) as cursor:
            session = session_rows.read_session(db, cursor, identity, lock=True)
        created = False
        if session is None:
            session, created = _create(identity, create or {})
        if not created:
            scope.check_session_in_scope(access, identity)
        if not created and _replayed(session, sequence):
            return False
        change = SessionChange(db, session, created)
        changed = _apply(change, updates, sequence)
        with session_rows.cursor_for(db) as cursor:
            cursor.execute(*session_rows.row_update(db, session, changed))
        if change.unlinked and not session.folder_links.exists():
            _link_root(session)
        scope.check_session_in_scope(access, identity, created)  # still (or now, when created) in scope
        # Receivers (live streaming: the buffer's session directory, WebSocket clients) see committed changes.
        transaction.on_commit(lambda: signals.session_changed.send(sender=Session, session=session))
    return True


def _replayed(session, sequence):
    return sequence is not None and session.last_sequence is not None and sequence <= session.last_sequence


def _apply(change, updates, sequence):
    """Apply the ops to the loaded session; returns the columns to write (the changed ones and ``updated``)."""
    session = change.session
    before = _row_values(session)
    for index, (op, arg) in enumerate(updates):
        try:
            OPS[op](change, arg)
        except InvalidArgument as exc:
            raise InvalidArgument(f"updates[{index}] {op}: {exc.message}", field=exc.field) from None
    if sequence is not None:
        session.last_sequence = sequence
    session.updated = timezone.now()
    return [name for name, value in _row_values(session).items() if before[name] != value] + ["updated"]


# Columns the ops may change; JSON values are copied so that in-place edits show as changes.
_ROW_FIELDS = [
    f.attname for f in Session._meta.concrete_fields if not f.primary_key and f.attname not in ("created", "updated")
]
_JSON_FIELDS = {"details", "ext_details"}


def _row_values(session):
    return {
        name: copy.deepcopy(getattr(session, name)) if name in _JSON_FIELDS else getattr(session, name)
        for name in _ROW_FIELDS
    }


# --- the unlocked path -----------------------------------------------------------------------

# Ops that change only the loaded row, and update_markers, whose upsert the row write can carry.
_UNLOCKED_OPS = frozenset(
    {
        "update_heartbeat",
        "set_state",
        "set_timestamp",
        "set_time_range",
        "extend_time_range",
        "clear_time_range",
        "set_identifier",
        "set_details",
        "update_details",
        "set_details_json",
        "update_details_json",
        "delete_details",
        "set_type",
        "clear_type",
        "set_quality",
        "clear_quality",
        "set_group",
        "clear_group",
        "set_version",
        "clear_version",
        "update_markers",
    }
)


def _unlocked_applies(db, updates):
    # One marker upsert at most: two in one statement could not touch the same marker twice.
    return (
        db.vendor == "postgresql"
        and all(op in _UNLOCKED_OPS for op, _ in updates)
        and sum(op == "update_markers" for op, _ in updates) <= 1
    )


def _update_unlocked(db, identity, updates, sequence, outside_transaction):
    """Apply ``updates`` to an existing session without a transaction of its own (PostgreSQL).

    The row comes from ``session_rows.RECENT`` when this process wrote it last (outside a transaction:
    a version written inside one may still roll back), else from a read. Returns None,
    having written nothing, when the session is missing or its row changed before the
    write: the caller then takes the locked path.
    """
    recent = session_rows.RECENT.take(identity) if outside_transaction else None
    with session_rows.cursor_for(db) as cursor:
        for source in ([recent] if recent else []) + [None]:
            if source is None:
                loaded = session_rows.read_session(db, cursor, identity, lock=False)
                if loaded is None:
                    return None
            else:
                loaded = Session.from_db(db.alias, session_rows.SESSION_ATTNAMES, source[0]), source[1]
            session, version = loaded
            if _replayed(session, sequence):
                if source is None:
                    return False
                continue  # the session may have been re-created since: only its stored row tells
            written = _guarded_write(db, cursor, session, version, updates, sequence)
            if written is not None:
                break
            if source is None:
                return None
    if outside_transaction:
        session_rows.RECENT.put(identity, [getattr(session, a) for a in session_rows.SESSION_ATTNAMES], written)
    transaction.on_commit(lambda: signals.session_changed.send(sender=Session, session=session))
    return True


def _guarded_write(db, cursor, session, version, updates, sequence):
    """Apply the ops to ``session`` and write it, with the markers they upsert, in one statement that only
    writes if the stored row is still ``version``. Returns the version written, or None."""
    change = SessionChange(db, session, False, defer_writes=True)
    changed = _apply(change, updates, sequence)
    sql, params = session_rows.row_update(db, session, changed)
    guard = "EXISTS (SELECT 1 FROM row_write)"
    ctes = [f"row_write AS ({sql} AND xmin = %s::xid RETURNING xmin)"]
    params.append(version)
    for index, (statement, statement_params) in enumerate(change.deferred):
        ctes.append(f"write_{index} AS ({statement(guard)})")
        params += statement_params
    cursor.execute(f"WITH {', '.join(ctes)} SELECT xmin FROM row_write", params)
    row = cursor.fetchone()
    return None if row is None else row[0]


def _create(identity, create):
    state = create.get("state") or SessionState.CLOSED
    values.validate_state(state)
    ts = _timestamp(create["timestamp"]) if create.get("timestamp") else now_timestamp()
    session = Session(
        identity=identity,
        state=state,
        timestamp_text=ts.text,
        timestamp_ns=ts.ns,
        timestamp=ts.datetime,
        identifier=create.get("identifier") or identity,
        heartbeat=timezone.now(),
    )
    try:
        with transaction.atomic():
            session.save(force_insert=True)
    except IntegrityError:
        # Created concurrently by another connection: lock and update theirs.
        return Session.objects.select_for_update().get(identity=identity), False
    _link_root(session)
    return session, True


def _link_root(session):
    root, _ = Folder.objects.get_or_create(identity=ROOT_FOLDER, defaults={"label": ""})
    FolderLink.objects.get_or_create(session=session, folder=root)


# --- scalar properties -------------------------------------------------------------------


def _heartbeat(change, _):
    change.session.heartbeat = timezone.now()


def _set_state(change, state):
    change.session.state = values.validate_state(state)


def _timestamp(text):
    ts = parse_timestamp(text, field="timestamp")
    if not -(2**63) <= ts.ns < 2**63:
        raise InvalidArgument(
            f"timestamp {excerpt(text)} is outside the int64 nanosecond range (years 1677-2262)", field="timestamp"
        )
    return ts


def _set_timestamp(change, text):
    ts = _timestamp(text)
    s = change.session
    s.timestamp_text, s.timestamp_ns, s.timestamp = ts.text, ts.ns, ts.datetime


def _set_time_range(change, time_range):
    change.session.start_time, change.session.end_time = values.validate_time_range(*time_range)


def _extend_time_range(change, time_range):
    start, end = values.validate_time_range(*time_range)
    s = change.session
    s.start_time = start if s.start_time is None else min(s.start_time, start)
    s.end_time = end if s.end_time is None else max(s.end_time, end)


def _clear_time_range(change, _):
    change.session.start_time = change.session.end_time = None


def _set_identifier(change, identifier):
    if not isinstance(identifier, str) or identifier == "":
        raise InvalidArgument("identifier must be a non-empty string", field="identifier")
    change.session.identifier = identifier


def _string_setter(field):
    def apply(change, value):
        if not isinstance(value, str):
            raise InvalidArgument(f"{field} must be a string", field=field)
        setattr(change.session, field, value)

    return apply


def _clearer(field):
    def apply(change, _):
        setattr(change.session, field, None)

    return apply


def _set_quality(change, quality):
    change.session.quality = values.validate_quality(quality)


# --- details -------------------------------------------------------------------------------


def _details_target(change, category):
    """The dict a details op works on: ``details`` for a blank category, else an extDetails group."""
    if not category:
        return change.session.details
    if not isinstance(category, str):
        raise InvalidArgument("details category must be a string")
    return change.session.ext_details.setdefault(category, {})


def _where(category):
    return f"extDetails.{category}" if category else "details"


def _replace_details(change, category, details):
    if category:
        _details_target(change, category)  # checks the category
        change.session.ext_details[category] = details
        if not details:
            del change.session.ext_details[category]
    else:
        change.session.details = details


def _set_details(change, arg):
    category = arg.get("category", "")
    _replace_details(change, category, values.validate_details(arg.get("details", {}), _where(category)))


def _merge_details(change, category, details):
    target = _details_target(change, category)
    target.update(details)
    if category and not target:
        del change.session.ext_details[category]  # no empty groups


def _update_details(change, arg):
    category = arg.get("category", "")
    _merge_details(change, category, values.validate_details(arg.get("details", {}), _where(category)))


def _set_details_json(change, arg):
    category = arg.get("category", "")
    _replace_details(change, category, values.parse_details_json(arg.get("json", ""), _where(category)))


def _update_details_json(change, arg):
    category = arg.get("category", "")
    _merge_details(change, category, values.parse_details_json(arg.get("json", ""), _where(category)))


def _delete_details(change, arg):
    category = arg.get("category", "")
    target = _details_target(change, category)
    for key in arg.get("keys", []):
        target.pop(key, None)
    if category and not target:
        change.session.ext_details.pop(category, None)


# --- markers -------------------------------------------------------------------------------


def _marker_fields(spec, at):
    """``(id, fields)`` of one marker; ``at`` is where it is in the op's list (``markers[2]``), for errors."""
    marker_id = spec.get("id")
    if not isinstance(marker_id, str) or marker_id == "":
        raise InvalidArgument("marker id must be a non-empty string", field=f"{at}.id")
    start, end = spec.get("start_time"), spec.get("end_time")
    if start is not None and end is not None and start > end:
        raise InvalidArgument(f"marker {excerpt(marker_id)} starts after it ends", field=f"{at}.end_time")
    details = spec.get("details") or {}
    if not isinstance(details, dict):
        raise InvalidArgument(f"marker {excerpt(marker_id)} details must be a JSON object", field=f"{at}.details")
    return marker_id, {
        "category": spec.get("category") or "",
        "type": spec.get("type") or "",
        "label": spec.get("label") or "",
        "description": spec.get("description"),
        "start_time": start,
        "end_time": end,
        "details": details,
    }


def _checked_markers(markers):
    parsed, seen = [], set()
    for index, spec in enumerate(markers):
        marker_id, fields = _marker_fields(spec, f"markers[{index}]")
        if marker_id in seen:
            raise InvalidArgument(
                f"marker id {excerpt(marker_id)} appears more than once", field=f"markers[{index}].id"
            )
        seen.add(marker_id)
        parsed.append((marker_id, fields))
    return parsed


def _set_markers(change, markers):
    parsed = _checked_markers(markers)
    Marker.objects.filter(session=change.session).delete()
    Marker.objects.bulk_create([Marker(session=change.session, marker_id=m, **f) for m, f in parsed])


def _update_markers(change, markers):
    # One INSERT .. ON CONFLICT DO UPDATE for the whole batch (ids are unique within it).
    parsed = _checked_markers(markers)
    if not parsed:
        return
    params = []
    for marker_id, fields in parsed:
        values = [change.session.pk, marker_id, *(fields[name] for name in session_rows.MARKER_FIELDS)]
        params += [f.get_db_prep_save(v, change.db) for f, v in zip(session_rows.MARKER_INSERT_FIELDS, values)]
    change.write(functools.partial(session_rows.marker_upsert, change.db.vendor, len(parsed)), params)


def _delete_markers(change, marker_ids):
    Marker.objects.filter(session=change.session, marker_id__in=list(marker_ids)).delete()


# --- config bindings -----------------------------------------------------------------------


def _checked_config_bindings(bindings):
    out = {}
    for index, b in enumerate(bindings):
        identifier, offset = b.get("identifier"), b.get("channel_offset", 0) or 0
        if not isinstance(identifier, str) or identifier == "":
            raise InvalidArgument(
                "config binding identifier must be a non-empty string", field=f"config_bindings[{index}].identifier"
            )
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 0xFFFFFFFF:
            raise InvalidArgument(
                f"config binding {excerpt(identifier)} channel offset must be an integer in 0..2^32-1",
                field=f"config_bindings[{index}].channel_offset",
            )
        out[identifier] = offset
    return out


def _set_config_bindings(change, bindings):
    parsed = _checked_config_bindings(bindings)
    ConfigBinding.objects.filter(session=change.session).delete()
    ConfigBinding.objects.bulk_create(
        [ConfigBinding(session=change.session, identifier=i, channel_offset=o) for i, o in parsed.items()]
    )


def _update_config_bindings(change, bindings):
    ConfigBinding.objects.bulk_create(
        [
            ConfigBinding(session=change.session, identifier=i, channel_offset=o)
            for i, o in _checked_config_bindings(bindings).items()
        ],
        update_conflicts=True,
        unique_fields=["session", "identifier"],
        update_fields=["channel_offset"],
    )


def _delete_config_bindings(change, identifiers):
    ConfigBinding.objects.filter(session=change.session, identifier__in=list(identifiers)).delete()


# --- data bindings -------------------------------------------------------------------------


def _binding_key(key):
    identity = validate_identity(key.get("identity"), "data binding key identity")
    return (key.get("source") or "", identity, int(key.get("time_ref") or 0))


CHANNEL_BINDING_KEYS = ("first_data_channel", "first_session_channel", "last_session_channel")


def _checked_channel_bindings(name, channel_bindings, at):
    """A data binding's channel ranges: objects of channel ids (uint32, as on the wire) under
    ``CHANNEL_BINDING_KEYS`` (missing keys are 0), each ending at or after its start."""
    field = f"{at}.channel_bindings"
    if not isinstance(channel_bindings, list):
        raise InvalidArgument(f"data binding {name}: channel bindings must be a list", field=field)
    out = []
    for index, cb in enumerate(channel_bindings):
        if not isinstance(cb, dict):
            raise InvalidArgument(f"data binding {name}: channel binding {index} must be an object", field=field)
        unknown = sorted(str(k) for k in set(cb) - set(CHANNEL_BINDING_KEYS))
        if unknown:
            raise InvalidArgument(
                f"data binding {name}: channel binding {index} has unknown keys {excerpt(', '.join(unknown))}",
                field=field,
            )
        checked = {}
        for key in CHANNEL_BINDING_KEYS:
            value = cb.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:  # uint32
                raise InvalidArgument(
                    f"data binding {name}: channel binding {index}: {key} must be a non-negative integer below 2^32",
                    field=field,
                )
            checked[key] = value
        first, last = checked["first_session_channel"], checked["last_session_channel"]
        if last < first:
            raise InvalidArgument(
                f"data binding {name}: last_session_channel {last} is below first_session_channel {first}",
                field=field,
            )
        out.append(checked)
    return out


def _checked_data_bindings(bindings):
    out = {}
    for index, b in enumerate(bindings):
        at = f"data_bindings[{index}]"
        try:
            key = _binding_key(b)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field=f"{at}.identity") from None
        start, end = b.get("session_start_time"), b.get("session_end_time")
        if start is not None and end is not None and start > end:
            raise InvalidArgument(
                f"data binding {excerpt(key[1])} session start is after its end", field=f"{at}.session_end_time"
            )
        channels = _checked_channel_bindings(excerpt(key[1]), b.get("channel_bindings", []), at)
        out[key] = {
            "session_start_time": start,
            "session_end_time": end,
            "session_time_offset": int(b.get("session_time_offset") or 0),
            "channel_bindings": channels,
        }
    return out


def _set_data_bindings(change, bindings):
    parsed = _checked_data_bindings(bindings)
    DataBinding.objects.filter(session=change.session).delete()
    DataBinding.objects.bulk_create(
        [
            DataBinding(session=change.session, source=s, identity=i, time_ref=t, **fields)
            for (s, i, t), fields in parsed.items()
        ]
    )


def _update_data_bindings(change, bindings):
    DataBinding.objects.bulk_create(
        [
            DataBinding(session=change.session, source=s, identity=i, time_ref=t, **fields)
            for (s, i, t), fields in _checked_data_bindings(bindings).items()
        ],
        update_conflicts=True,
        unique_fields=["session", "source", "identity", "time_ref"],
        update_fields=["session_start_time", "session_end_time", "session_time_offset", "channel_bindings"],
    )


def _delete_data_bindings(change, keys):
    for source, identity, time_ref in (_binding_key(k) for k in keys):
        DataBinding.objects.filter(session=change.session, source=source, identity=identity, time_ref=time_ref).delete()


# --- folders -------------------------------------------------------------------------------


def _folders(identities):
    """Folder rows for identities; a folder named but not yet created is made under the root."""
    identities = list(dict.fromkeys(identities))
    for identity in identities:
        if identity != ROOT_FOLDER:
            validate_identity(identity, "folder identity")
    existing = {f.identity: f for f in Folder.objects.filter(identity__in=identities)}
    root = None
    for identity in identities:
        if identity not in existing:
            root = root or Folder.objects.get_or_create(identity=ROOT_FOLDER, defaults={"label": ""})[0]
            existing[identity], _ = Folder.objects.get_or_create(
                identity=identity, defaults={"parent": root, "label": identity}
            )
    return [existing[i] for i in identities]


def _set_folders(change, identities):
    folders = _folders(identities)
    FolderLink.objects.filter(session=change.session).exclude(folder__in=folders).delete()
    _update_folder_rows(change, folders)
    change.unlinked = True


def _update_folders(change, identities):
    _update_folder_rows(change, _folders(identities))


def _update_folder_rows(change, folders):
    have = set(FolderLink.objects.filter(session=change.session).values_list("folder_id", flat=True))
    FolderLink.objects.bulk_create(
        [FolderLink(session=change.session, folder=f) for f in folders if f.identity not in have]
    )


def _delete_folders(change, identities):
    # Orphans are re-linked to the root when the call completes.
    identities = [i for i in identities if is_identity(i)]  # no folder has an invalid identity
    FolderLink.objects.filter(session=change.session, folder_id__in=identities).delete()
    change.unlinked = True


# --- refs ----------------------------------------------------------------------------------


def _checked_uris(uris):
    uris = list(dict.fromkeys(uris))
    for uri in uris:
        if not isinstance(uri, str) or uri == "":
            raise InvalidArgument("reference URIs must be non-empty strings")
    return uris


def _ref_ops(kind):
    def set_refs(change, uris):
        uris = _checked_uris(uris)
        SessionRef.objects.filter(session=change.session, kind=kind).exclude(uri__in=uris).delete()
        update_refs(change, uris)

    def update_refs(change, uris):
        uris = _checked_uris(uris)
        have = set(SessionRef.objects.filter(session=change.session, kind=kind).values_list("uri", flat=True))
        SessionRef.objects.bulk_create(
            [SessionRef(session=change.session, kind=kind, uri=u) for u in uris if u not in have]
        )

    def delete_refs(change, uris):
        SessionRef.objects.filter(session=change.session, kind=kind, uri__in=list(uris)).delete()

    return set_refs, update_refs, delete_refs


_anchor_ops = _ref_ops(RefKind.ANCHOR)
_alternate_ops = _ref_ops(RefKind.ALTERNATE_OF)
_child_ops = _ref_ops(RefKind.CHILD_OF)

OPS = {
    "update_heartbeat": _heartbeat,
    "set_state": _set_state,
    "set_timestamp": _set_timestamp,
    "set_time_range": _set_time_range,
    "extend_time_range": _extend_time_range,
    "clear_time_range": _clear_time_range,
    "set_identifier": _set_identifier,
    "set_details": _set_details,
    "update_details": _update_details,
    "set_details_json": _set_details_json,
    "update_details_json": _update_details_json,
    "delete_details": _delete_details,
    "set_type": _string_setter("type"),
    "clear_type": _clearer("type"),
    "set_quality": _set_quality,
    "clear_quality": _clearer("quality"),
    "set_group": _string_setter("group"),
    "clear_group": _clearer("group"),
    "set_version": _string_setter("version"),
    "clear_version": _clearer("version"),
    "set_markers": _set_markers,
    "update_markers": _update_markers,
    "delete_markers": _delete_markers,
    "set_config_bindings": _set_config_bindings,
    "update_config_bindings": _update_config_bindings,
    "delete_config_bindings": _delete_config_bindings,
    "set_data_bindings": _set_data_bindings,
    "update_data_bindings": _update_data_bindings,
    "delete_data_bindings": _delete_data_bindings,
    "set_folders": _set_folders,
    "update_folders": _update_folders,
    "delete_folders": _delete_folders,
    "set_ref_anchors": _anchor_ops[0],
    "update_ref_anchors": _anchor_ops[1],
    "delete_ref_anchors": _anchor_ops[2],
    "set_alternate_of_refs": _alternate_ops[0],
    "update_alternate_of_refs": _alternate_ops[1],
    "delete_alternate_of_refs": _alternate_ops[2],
    "set_child_of_refs": _child_ops[0],
    "update_child_of_refs": _child_ops[1],
    "delete_child_of_refs": _child_ops[2],
}


def delete_sessions(identities, access=Access.ANONYMOUS_FULL):
    """Delete sessions; identities that do not exist, or that ``access`` does not reach, are ignored.

    Returns how many were deleted.
    """
    identities = [i for i in identities if is_identity(i)]  # no session has an invalid identity
    with transaction.atomic():
        visible = scope.visible_sessions(access).filter(identity__in=identities)
        gone = list(visible.values_list("identity", flat=True))
        _, deleted = Session.objects.filter(identity__in=gone).delete()
        if gone:  # live watchers of these sessions are closed once the deletion commits
            transaction.on_commit(lambda: signals.sessions_deleted.send(sender=Session, identities=gone))
    # delete() counts the cascaded markers, bindings, links and refs too.
    return deleted.get(Session._meta.label, 0)


# --- for adapters: checks and batches --------------------------------------------------------

# The identities of the throw-away sessions ``check_session_update`` applies ops to.
DRY_RUN_PREFIX = "dry-run-"


def check_session_update(updates, create=None):
    """Raise what ``create_or_update_session`` would raise for ``updates``, keeping nothing.

    The ops are applied to a throw-away session in a savepoint that is always rolled back, so an
    adapter (the admin's forms) can show the service's own errors, with their ``field``, before it saves.
    """
    dry_run.run(lambda: create_or_update_session(f"{DRY_RUN_PREFIX}{uuid.uuid4()}", updates, create=create))


def close_sessions(identities):
    """Close every session of ``identities`` not already in a closed state (``close_ops``), in one transaction.

    Returns ``(closed, already_closed)`` counts.
    """
    closed = already = 0
    with transaction.atomic():
        states = dict(Session.objects.filter(identity__in=list(identities)).values_list("identity", "state"))
        for identity, state in states.items():
            ops = close_ops(state)
            if not ops:
                already += 1
                continue
            create_or_update_session(identity, ops)
            closed += 1
    return closed, already
