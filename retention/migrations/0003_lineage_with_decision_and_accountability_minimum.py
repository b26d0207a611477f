"""Brings saved policies in line with two rules:

- Decision lineage lives exactly as long as its decision: the decision's policy purges it
  (first, in chunks), so lineage has no policy of its own. The seeded one (1 year while
  decisions keep 2) emptied "which models used this person" a year early; policies on
  lineage go (one a legal hold names stays, disabled).
- Accountability records (the audit trail, the consent ledger, its proof contexts) are kept
  at least RETENTION_MINIMUM_ACCOUNTABILITY_DAYS: shorter policies are raised to it, and
  none stays tied to a purpose (a withdrawal would remove proof early).
"""

from datetime import timedelta

from django.conf import settings
from django.db import migrations

LINEAGE = "consent.DecisionLineage"
# Frozen here (the registry may change): the targets that were accountability records then.
ACCOUNTABILITY = ["governance.AuditEvent", "consent.ConsentEvent", "consent.ConsentContext"]
# The seeded periods before this migration, for the way back.
SEEDED_BEFORE = {
    "governance.AuditEvent": timedelta(days=2 * 365),
    "consent.ConsentEvent": timedelta(days=3 * 365),
    "consent.ConsentContext": timedelta(days=365),
}


def forward(apps, schema_editor):
    RetentionPolicy = apps.get_model("retention", "RetentionPolicy")
    LegalHold = apps.get_model("retention", "LegalHold")
    lineage = RetentionPolicy.objects.filter(target=LINEAGE)
    # A hold names its policy (PROTECT): such a policy stays, disabled; the rest go (runs
    # keep the policy's name on their items).
    held = LegalHold.objects.filter(policy__in=lineage).values("policy_id")
    lineage.filter(pk__in=held).update(enabled=False)
    lineage.exclude(pk__in=held).delete()
    minimum = timedelta(days=max(0, int(settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS)))
    accountable = RetentionPolicy.objects.filter(target__in=ACCOUNTABILITY)
    accountable.filter(keep_for__lt=minimum).update(keep_for=minimum)
    accountable.exclude(purpose=None).update(purpose=None)


def reverse(apps, schema_editor):
    RetentionPolicy = apps.get_model("retention", "RetentionPolicy")
    if not RetentionPolicy.objects.filter(target=LINEAGE).exists():
        RetentionPolicy.objects.create(
            name=f"default: {LINEAGE}", target=LINEAGE, keep_for=timedelta(days=365)
        )
    for target, keep_for in SEEDED_BEFORE.items():
        RetentionPolicy.objects.filter(target=target, name=f"default: {target}").update(
            keep_for=keep_for
        )


class Migration(migrations.Migration):
    dependencies = [("retention", "0002_seed_policies_and_schedules")]
    operations = [migrations.RunPython(forward, reverse)]
