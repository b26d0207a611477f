"""Drops the second index PostgreSQL got on ImportedRecord.external_id_hash.

Django gives every unique CharField a `varchar_pattern_ops` twin for LIKE searches. A keyed
hash is only ever looked up whole (the unique index serves that), so the twin was upkeep
for nothing on every imported event: about 2 us of PostgreSQL CPU each (bench/import.py).
SQLite never had it.
"""

from django.db import migrations


def _like_index(apps, schema_editor):
    model = apps.get_model("consent", "ImportedRecord")
    field = model._meta.get_field("external_id_hash")
    name = schema_editor._create_index_name(model._meta.db_table, [field.column], suffix="_like")
    return model, field, name


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    model, _, name = _like_index(apps, schema_editor)
    schema_editor.execute(schema_editor._delete_index_sql(model, name))


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    model, field, _ = _like_index(apps, schema_editor)
    schema_editor.execute(schema_editor._create_like_index_sql(model, field))


class Migration(migrations.Migration):
    dependencies = [("consent", "0015_imports")]
    operations = [migrations.RunPython(forward, reverse)]
