"""A purpose's events over a time window (consent rates, the dashboard) read one index range
instead of every event of the purpose: (purpose, effective_at) replaces the foreign key's
own index on purpose, which it leads with, so writes keep as many indexes as before.

On PostgreSQL the index is built and the old one dropped CONCURRENTLY (writes go on during
the build on a large ledger), hence a non-atomic migration."""

from django.db import migrations, models

TABLE = "consent_consentevent"
NEW = "consent_event_purpose_time"


def _purpose_only_indexes(schema_editor, model):
    return schema_editor._constraint_names(model, ["purpose_id"], index=True, primary_key=False)


def forwards(apps, schema_editor):
    model = apps.get_model("consent", "ConsentEvent")
    old = _purpose_only_indexes(schema_editor, model)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NEW} ON {TABLE} (purpose_id, effective_at)"
        )
        for name in old:
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        return
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {NEW} ON {TABLE} (purpose_id, effective_at)")
    for name in old:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        f"CREATE INDEX {concurrently}IF NOT EXISTS consent_consentevent_purpose_id "
        f"ON {TABLE} (purpose_id)"
    )
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NEW}")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("consent", "0017_failed_imports_destroy_batches")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="consentevent",
                    name="purpose",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.PROTECT,
                        related_name="events",
                        to="consent.purpose",
                    ),
                ),
                migrations.AddIndex(
                    model_name="consentevent",
                    index=models.Index(fields=["purpose", "effective_at"], name=NEW),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        )
    ]
