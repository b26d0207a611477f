"""Drops two single-column indexes that composite ones already lead with.

consent_consentevent.subject_id is the first column of the chain position (subject, seq),
and consent_consentstate.purpose_id of the unique (purpose, subject): every consent write
maintained both for nothing. Only the indexes go (DROP INDEX, quick): Django's AlterField
would also drop and re-validate the foreign keys, scanning the ledger under a lock, and on
SQLite rebuild the ledger table, dropping its append-only triggers with it.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = [
    ("consent_consentevent", "consent_consentevent_subject_id_ec3ed291", "subject_id"),
    ("consent_consentstate", "consent_consentstate_purpose_id_b67afbf2", "purpose_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0005_property_bannertext_subjectlink"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="consentevent",
                    name="subject",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="consent.subject",
                    ),
                ),
                migrations.AlterField(
                    model_name="consentstate",
                    name="purpose",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.purpose",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
                )
                for table, index, column in INDEXES
            ],
        )
    ]
