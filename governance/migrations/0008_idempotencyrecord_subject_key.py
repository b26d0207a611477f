"""Idempotency records name the subject of their request (erasure removes them with it), and
records made before their hashes were keyed lose what could be reversed.

Their request hashes were plain SHA-256 over path and body, which a list of likely
identifiers reverses: they are blanked, so a retry of such a request answers 409 rather
than writing twice. Banner records are deleted: their keys are now scoped by device and
origin, so nothing finds them again, and they held an encrypted device id.
"""

from typing import Any

from django.db import migrations, models


def forget_unkeyed_hashes(apps: Any, schema_editor: Any) -> None:
    record = apps.get_model("governance", "IdempotencyRecord")
    record.objects.filter(response_body__has_key="device_id_encrypted").delete()
    record.objects.exclude(request_hash="").update(request_hash="")


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0007_drop_redundant_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="subject_key",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AddIndex(
            model_name="idempotencyrecord",
            index=models.Index(fields=["subject_key"], name="idempotency_subject_key"),
        ),
        migrations.RunPython(forget_unkeyed_hashes, migrations.RunPython.noop),
    ]
