"""Identifier rectification (Art. 16): a ledger event without a purpose (`rectified`), the
key-change rows the verifier reads each event's key from, and the former keys a tombstone
keeps for erasure replays.

On SQLite, making consent_consentevent.purpose nullable rebuilds the table, which drops its
triggers: they are created again here, as in 0002.
"""

import django.db.models.deletion
from django.db import migrations, models

SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER IF NOT EXISTS consent_ledger_no_update
    BEFORE UPDATE ON consent_consentevent
    BEGIN
        SELECT RAISE(ABORT, 'consent ledger is append-only: UPDATE refused');
    END;
    """,
    """
    CREATE TRIGGER IF NOT EXISTS consent_ledger_no_delete
    BEFORE DELETE ON consent_consentevent
    WHEN NOT EXISTS (SELECT 1 FROM consent_ledgerpurgeguard)
    BEGIN
        SELECT RAISE(ABORT, 'consent ledger is append-only: DELETE refused');
    END;
    """,
]


def sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("consent", "0007_ledger_purge_function")]

    operations = [
        migrations.AddField(
            model_name="subjecttombstone",
            name="former_keys",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="consentevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("granted", "Granted"),
                    ("refused", "Refused"),
                    ("withdrawn", "Withdrawn"),
                    ("expired", "Expired"),
                    ("rectified", "Identifier rectified"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="consentevent",
            name="purpose",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="events",
                to="consent.purpose",
            ),
        ),
        # Both directions: a reverse rebuilds the table as well.
        migrations.RunPython(sqlite_triggers, sqlite_triggers),
        migrations.CreateModel(
            name="SubjectKeyChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("old_key", models.CharField(max_length=64)),
                ("new_key", models.CharField(max_length=64)),
                ("from_seq", models.PositiveIntegerField()),
                ("event_id", models.UUIDField()),
                ("created_at", models.DateTimeField()),
                (
                    "subject",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="key_changes",
                        to="consent.subject",
                    ),
                ),
            ],
            options={
                "ordering": ["subject_id", "from_seq"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("subject", "from_seq"), name="key_change_position"
                    )
                ],
                "indexes": [models.Index(fields=["old_key"], name="key_change_old_key")],
            },
        ),
    ]
