"""The registered retention targets: this service's models, the configured external tables
and the configured Delta tables of the lake.

Policies name targets by `name`; an unknown name is refused when a policy is saved. Each
target is an instance of its kind (retention.targets): the runs and the rights requests call
its `count`, `purge`, `subject_remove` and `subject_rows`, never branching on what it is.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from consent.models import ConsentEvent
from governance.audit import POLICY_TARGET_TYPES
from retention.targets.base import ErasureMode, SubjectRef, Target, no_rows
from retention.targets.external import ExternalTable
from retention.targets.lake import DeltaTable
from retention.targets.ledger import SubjectHistory
from retention.targets.rows import GuardedRows, ModelRows, fk_subject, key_subject


def _context_of(ref: SubjectRef) -> Q:
    if ref.pk is None:
        return no_rows()
    receipts = ConsentEvent.objects.filter(subject_id=ref.pk).values("receipt_id")
    return Q(receipt_id__in=receipts)


# The seeded period of accountability targets: the default minimum (6 years with leap days).
ACCOUNTABILITY_DEFAULT_DAYS = 2192


def _builtin() -> list[Target]:
    return [
        SubjectHistory(
            name="consent.ConsentEvent",
            label="Consent ledger (whole subject histories)",
            timestamp_field="recorded_at",
            model_label="consent.ConsentEvent",
            subject_q=fk_subject("subject"),
            erasure=ErasureMode.LEDGER,
            # Proof of consent (and what each receipt says) is kept while it may be asked
            # for: limitation periods.
            accountability=True,
            default_keep=timedelta(days=ACCOUNTABILITY_DEFAULT_DAYS),
        ),
        ModelRows(
            name="consent.ConsentContext",
            label="Proof context of consent receipts",
            timestamp_field="created_at",
            model_label="consent.ConsentContext",
            subject_q=_context_of,
            erasure=ErasureMode.LEDGER,
            accountability=True,
            default_keep=timedelta(days=ACCOUNTABILITY_DEFAULT_DAYS),
        ),
        ModelRows(
            name="consent.Decision",
            label="Check decisions",
            timestamp_field="created_at",
            model_label="consent.Decision",
            erasure=ErasureMode.NONE,
            default_keep=timedelta(days=2 * 365),
        ),
        ModelRows(
            name="consent.DecisionLineage",
            label="Decision lineage (allowed subjects)",
            timestamp_field="decision__created_at",
            model_label="consent.DecisionLineage",
            subject_q=fk_subject("subject"),
            erasure=ErasureMode.LINEAGE,
            # "Which models used this person" must answer as long as the decision exists.
            purged_with=("consent.Decision", "decision"),
            default_keep=timedelta(days=2 * 365),
        ),
        GuardedRows(
            name="governance.AuditEvent",
            label="Audit trail",
            timestamp_field="at",
            model_label="governance.AuditEvent",
            subject_q=key_subject("detail__subject_key"),
            subject_optional_field="detail__subject_key",
            # Append-only (trust issue): never updated; deleted only inside its guard.
            # Accountability (Art. 5(2)): the record of the rights request itself stays; it
            # holds only the keyed hash, as the tombstone does. (audit_purge_subject keeps
            # the same rows on PostgreSQL.)
            erasure_keep={"action__startswith": "rights."},
            never_purge={"target_type__in": POLICY_TARGET_TYPES},
            accountability=True,
            default_keep=timedelta(days=ACCOUNTABILITY_DEFAULT_DAYS),
        ),
        ModelRows(
            name="governance.IdempotencyRecord",
            label="Stored idempotent answers",
            timestamp_field="created_at",
            model_label="governance.IdempotencyRecord",
            # Redacted answers, but the record still says the subject made a request then.
            subject_q=key_subject("subject_key"),
            subject_optional_field="subject_key",
            default_keep=timedelta(days=1),
        ),
        ModelRows(
            name="governance.OutboxEvent",
            label="Outbox (announcements)",
            timestamp_field="created_at",
            model_label="governance.OutboxEvent",
            subject_q=lambda ref: Q(subject_key=ref.key) & ~Q(event_type="subject.erased"),
            default_keep=timedelta(days=30),
            default_condition={"dispatched_at__isnull": False},
        ),
        ModelRows(
            name="retention.PurgeRun",
            label="Purge runs",
            timestamp_field="started_at",
            model_label="retention.PurgeRun",
            erasure=ErasureMode.NONE,
            default_keep=timedelta(days=365),
        ),
        ModelRows(
            name="retention.AccessRequest",
            label="Access requests and their exports",
            timestamp_field="created_at",
            model_label="retention.AccessRequest",
            subject_q=key_subject("subject_key"),
            # The export goes after its period; the request itself stays as proof it was met.
            anonymize={"export_encrypted": None},
            default_keep=timedelta(days=30),
            default_action="anonymize",
        ),
    ]


def _external() -> list[Target]:
    return [
        ExternalTable(
            name=f"external:{spec['alias']}.{spec['table']}",
            label=spec.get("label", f"{spec['table']} in {spec['alias']}"),
            timestamp_field=spec["timestamp_column"],
            database=spec["alias"],
            table=spec["table"],
            subject_key_column=spec["subject_key_column"],
            purpose=spec.get("purpose"),
            default_keep=timedelta(days=int(spec.get("keep_days", 365))),
        )
        for spec in getattr(settings, "RETENTION_EXTERNAL_TABLES", [])
    ]


def _lakehouse() -> list[Target]:
    return [
        DeltaTable(
            name=f"delta:{spec['name']}",
            label=spec.get("label", f"Delta table {spec['name']}"),
            timestamp_field=spec["timestamp_column"],
            uri=spec["uri"],
            id_column=spec["id_column"],
            id_kind=spec.get("id_kind", "subject_key"),
            serves=tuple(spec.get("purposes", [])),
            namespace=spec.get("namespace", "account"),
            storage_options=dict(spec.get("storage_options", {})),
            default_keep=timedelta(days=int(spec.get("keep_days", 365))),
        )
        for spec in getattr(settings, "RETENTION_LAKEHOUSE_TABLES", [])
    ]


def targets() -> dict[str, Target]:
    """Every registered target by name (external and lake ones read from settings each
    time), each parent given the targets purged with it."""
    found = [*_builtin(), *_external(), *_lakehouse()]
    children: dict[str, list[Target]] = {}
    for target in found:
        if target.purged_with is not None:
            children.setdefault(target.purged_with[0], []).append(target)
    return {
        t.name: dataclasses.replace(t, children=tuple(children[t.name]))
        if t.name in children
        else t
        for t in found
    }


def target_get(name: str) -> Target | None:
    return targets().get(name)


def minimum_keep(target: Target) -> timedelta:
    """The shortest period any policy may keep this target's rows (zero when no minimum)."""
    if not target.accountability:
        return timedelta(0)
    return timedelta(days=max(0, int(settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS)))
