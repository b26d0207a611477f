"""The staff role groups: Privacy officer, Support, Auditor (defined in governance.roles).

On an existing database the permissions exist and the groups get them here; on a new one
Django creates permissions only after the last migration, and the post_migrate hook
(governance.apps) fills the groups at the end of the same `migrate`.
"""

from django.db import migrations


def roles_create(apps, schema_editor):
    from governance.roles import roles_sync

    roles_sync(apps=apps, using=schema_editor.connection.alias)


def roles_delete(apps, schema_editor):
    from governance.roles import ROLES

    group = apps.get_model("auth", "Group")
    group.objects.using(schema_editor.connection.alias).filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0011_stafftotpdevice"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(roles_create, roles_delete)]
