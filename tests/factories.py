"""Test data for the Session Service, created only through the service layer."""

from sessions_app.models import Session
from sessions_app.services.updates import create_or_update_session
from sessions_app.services.values import STATE_BY_NAME


def make_session(
    identity,
    *,
    timestamp="2024-01-01T00:00:00Z",
    state="closed",
    identifier=None,
    details=None,
    ext_details=None,
    type=None,
    quality=None,
    group=None,
    version=None,
    time_range=None,
    folders=None,
    anchors=None,
    child_of=None,
    alternate_of=None,
    markers=None,
    config_bindings=None,
    data_bindings=None,
):
    """Create (or update) a session through ``create_or_update_session`` and return the stored row."""
    create = {"timestamp": timestamp, "state": STATE_BY_NAME[state] if isinstance(state, str) else state}
    if identifier is not None:
        create["identifier"] = identifier
    ops = []
    if details:
        ops.append(("set_details", {"details": details}))
    for group_name, values in (ext_details or {}).items():
        ops.append(("set_details", {"category": group_name, "details": values}))
    for op, value in (("set_type", type), ("set_quality", quality), ("set_group", group), ("set_version", version)):
        if value is not None:
            ops.append((op, value))
    if time_range is not None:
        ops.append(("set_time_range", time_range))
    if folders is not None:
        ops.append(("set_folders", folders))
    if anchors:
        ops.append(("set_ref_anchors", anchors))
    if child_of:
        ops.append(("set_child_of_refs", child_of))
    if alternate_of:
        ops.append(("set_alternate_of_refs", alternate_of))
    if markers:
        ops.append(("set_markers", markers))
    if config_bindings:
        ops.append(("set_config_bindings", config_bindings))
    if data_bindings:
        ops.append(("set_data_bindings", data_bindings))
    create_or_update_session(identity, ops, create=create)
    return Session.objects.get(identity=identity)
