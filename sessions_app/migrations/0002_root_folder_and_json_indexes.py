"""The fixed root folder, and on PostgreSQL GIN indexes that serve detail equality queries."""

from django.db import migrations

GIN_INDEXES = [
    ("session_details_gin", "details"),
    ("session_ext_details_gin", "ext_details"),
]


def create_root(apps, schema_editor):
    Folder = apps.get_model("sessions_app", "Folder")
    Folder.objects.get_or_create(identity="", defaults={"label": "", "parent": None})


def create_gin(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("sessions_app", "Session")._meta.db_table
    for name, column in GIN_INDEXES:
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ("{column}" jsonb_path_ops)')


def drop_gin(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in GIN_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0001_initial")]

    operations = [
        migrations.RunPython(create_root, migrations.RunPython.noop),
        migrations.RunPython(create_gin, drop_gin),
    ]
