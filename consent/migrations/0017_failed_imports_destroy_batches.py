"""Failed imports are never resumed: the records of their unapplied batches, kept encrypted
until now, are destroyed (consent.imports.services.import_fail does so from now on)."""

from django.db import migrations


def destroy(apps, schema_editor):
    batches = apps.get_model("consent", "ConsentImportBatch")
    batches.objects.filter(consent_import__status="failed", records_encrypted__isnull=False).update(
        records_encrypted=None
    )


class Migration(migrations.Migration):
    dependencies = [("consent", "0016_imported_record_no_like_index")]

    operations = [migrations.RunPython(destroy, migrations.RunPython.noop)]
