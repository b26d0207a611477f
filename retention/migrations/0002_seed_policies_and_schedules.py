"""Seeds a default policy for every registered target and the beat schedules (hourly
enforcement, expiry, propagation, the rights-request sweeper), all editable in the admin."""

import json

from django.db import migrations

SCHEDULES = [
    # (periodic task name, task, every, period)
    ("retention: enforce policies", "retention.enforce", 1, "hours"),
    ("retention: expire consents", "retention.expire_consents", 15, "minutes"),
    ("retention: propagate withdrawals", "retention.propagate_withdrawals", 5, "minutes"),
    ("retention: sweep rights requests", "retention.sweep_rights_requests", 5, "minutes"),
]


def seed(apps, schema_editor):
    from retention.registry import targets

    RetentionPolicy = apps.get_model("retention", "RetentionPolicy")
    Purpose = apps.get_model("consent", "Purpose")
    for target in targets().values():
        if RetentionPolicy.objects.filter(target=target.name).exists():
            continue
        RetentionPolicy.objects.create(
            name=f"default: {target.name}",
            target=target.name,
            keep_for=target.default_keep,
            action=target.default_action,
            condition=target.default_condition,
            batch_size=target.default_batch_size,
            purpose=Purpose.objects.filter(key=target.purpose).first() if target.purpose else None,
        )
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "kwargs": json.dumps({})},
        )


def unseed(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()
    apps.get_model("retention", "RetentionPolicy").objects.filter(
        name__startswith="default: "
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("retention", "0001_initial"),
        ("consent", "0004_datause_decision_decisionlineage"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(seed, unseed)]
