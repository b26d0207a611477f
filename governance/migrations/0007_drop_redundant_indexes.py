"""Drops the outbox's single-column subject_key indexes: outbox_subject_seq (subject_key,
seq) serves lookups by key alone, and nothing searches keys by pattern. Only the indexes
go (DROP INDEX, quick; on SQLite without the table rebuild AlterField would do)."""

from django.db import migrations, models

PLAIN = "governance_outboxevent_subject_key_82557bf1"
PATTERN = "governance_outboxevent_subject_key_82557bf1_like"  # PostgreSQL only


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0006_auditevent_actor_key"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="outboxevent",
                    name="subject_key",
                    field=models.CharField(blank=True, max_length=64),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{PLAIN}"',
                    reverse_sql=(
                        f'CREATE INDEX IF NOT EXISTS "{PLAIN}" ON governance_outboxevent (subject_key)'
                    ),
                ),
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{PATTERN}"', reverse_sql=migrations.RunSQL.noop
                ),
            ],
        )
    ]
