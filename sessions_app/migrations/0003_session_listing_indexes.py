"""PostgreSQL indexes found by the session benchmark (bench/sessions_rest.py, EXPLAIN ANALYZE).

* ``session_ts_desc_nulls_last``: the default listing sorts ``timestamp_ns DESC NULLS LAST,
  identity`` (sessions_app.query.sorting puts nulls last); PostgreSQL's DESC is NULLS FIRST,
  so ``session_ts_desc`` cannot deliver that order and every page sorted the whole table.
* ``session_group_idx`` / ``session_version_idx``: the metamodel lists their distinct values (as it
  does ``type``, already indexed) by an index-only scan instead of scanning the table.
* ``session_has_ext_details``: the sessions with extended details, which the metamodel lists
  the groups of (``WHERE ext_details <> '{}'``); ext_details is GIN-indexed already, so this
  costs session updates nothing more.

No index on ``start_time`` / ``end_time``: live sessions extend their time range on nearly
every update, and an index on it would stop those updates being HOT (heap-only).

Kept out of the model state (like 0002's GIN indexes) as they are PostgreSQL-specific; SQLite
sorts NULLs first on ascending order, so ``session_ts_desc`` already serves it there.
Built CONCURRENTLY so applying this to a live database does not block session writes.
"""

from django.db import migrations

INDEXES = [
    ("session_ts_desc_nulls_last", '("timestamp_ns" DESC NULLS LAST, "identity")'),
    ("session_group_idx", '("group")'),
    ("session_version_idx", '("version")'),
    ("session_has_ext_details", '("identity") WHERE "ext_details" <> \'{}\'::jsonb'),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("sessions_app", "Session")._meta.db_table
    for name, columns in INDEXES:
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {columns}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("sessions_app", "0002_root_folder_and_json_indexes")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
