"""Retention targets: what a policy may govern, and how to find a subject's rows there.

A target is a model of this service (its timestamp field and, when it holds personal data,
how its rows name a subject) or an external table in a configured database alias (table,
timestamp column, subject-key column holding the HMAC-SHA256 subject key). Policies name
targets by `name`; an unknown name is refused when a policy is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Q

from governance.audit import POLICY_TARGET_TYPES, AuditDefinerPurge, audit_purge_allowed


@dataclass(frozen=True)
class SubjectRef:
    """A subject as targets see it: the keyed hash always, the row id when it is known."""

    key: str
    namespace: str = "account"
    pk: int | None = None


class Kind:
    ROWS = "rows"  # rows older than the period go, one chunk at a time
    SUBJECT_HISTORY = "subject_history"  # whole consent histories, through the ledger purge path


class ErasureMode:
    DELETE = "delete"
    ANONYMIZE = "anonymize"
    LEDGER = "ledger"  # removed last, by the guarded purge path, which leaves the tombstone
    LINEAGE = "lineage"  # removed first, by decisions_forget_subject
    NONE = "none"  # holds no personal data


@dataclass(frozen=True)
class Target:
    name: str
    timestamp_field: str
    label: str = ""
    kind: str = Kind.ROWS
    model_label: str | None = None
    # How rows name a subject; None when the target holds no personal data.
    subject_q: Callable[[SubjectRef], Q] | None = None
    # Field values that anonymise a row (the `anonymize` action and erasure of such rows).
    anonymize: dict[str, Any] = field(default_factory=dict)
    erasure: str = ErasureMode.DELETE
    # A field that may not name any subject at all (NULL or missing JSON key): such rows are
    # never held by a subject's hold.
    subject_optional_field: str | None = None
    # Rows of the subject that erasure keeps (the record of the erasure itself).
    erasure_keep: dict[str, Any] = field(default_factory=dict)
    # Entered around each deleting chunk: a table whose trigger guards DELETE (the audit).
    delete_guard: Callable[[], AbstractContextManager[None]] | None = None
    # PostgreSQL: the owner-owned functions that are the app role's only way past that
    # trigger (a second implementation of the delete, chosen by the engine).
    pg_purge: AuditDefinerPurge | None = None
    # Rows no policy ever purges (field values), e.g. the audit of policy changes.
    never_purge: dict[str, Any] = field(default_factory=dict)
    # Proof the controller must be able to show (Art. 5(2), 7(1)): no policy may keep it for
    # less than RETENTION_MINIMUM_ACCOUNTABILITY_DAYS. Erasure is not a policy: it still goes.
    accountability: bool = False
    # (target, field): rows that live exactly as long as their parent row in that target and
    # are purged by the parent's policy, first, in chunks; such a target has no policy of
    # its own.
    purged_with: tuple[str, str] | None = None
    default_keep: timedelta = timedelta(days=365)
    default_action: str = "delete"
    default_condition: dict[str, Any] = field(default_factory=dict)
    # External tables.
    database: str = "default"
    table: str | None = None
    subject_key_column: str | None = None
    purpose: str | None = None

    @property
    def external(self) -> bool:
        return self.table is not None

    @property
    def model(self) -> type[models.Model]:
        assert self.model_label is not None
        return apps.get_model(self.model_label)

    @property
    def holds_personal_data(self) -> bool:
        return self.subject_q is not None or self.subject_key_column is not None


def _fk(field_name: str) -> Callable[[SubjectRef], Q]:
    def q(ref: SubjectRef) -> Q:
        return Q(**{f"{field_name}_id": ref.pk}) if ref.pk is not None else Q(pk__in=[])

    return q


def _key(field_name: str) -> Callable[[SubjectRef], Q]:
    def q(ref: SubjectRef) -> Q:
        return Q(**{field_name: ref.key})

    return q


def _context_of(ref: SubjectRef) -> Q:
    from consent.models import ConsentEvent

    if ref.pk is None:
        return Q(pk__in=[])
    receipts = ConsentEvent.objects.filter(subject_id=ref.pk).values("receipt_id")
    return Q(receipt_id__in=receipts)


# The seeded period of accountability targets: the default minimum (6 years with leap days).
ACCOUNTABILITY_DEFAULT_DAYS = 2192


def _builtin() -> list[Target]:
    return [
        Target(
            name="consent.ConsentEvent",
            label="Consent ledger (whole subject histories)",
            timestamp_field="recorded_at",
            kind=Kind.SUBJECT_HISTORY,
            model_label="consent.ConsentEvent",
            subject_q=_fk("subject"),
            erasure=ErasureMode.LEDGER,
            # Proof of consent (and what each receipt says) is kept while it may be asked
            # for: limitation periods.
            accountability=True,
            default_keep=timedelta(days=ACCOUNTABILITY_DEFAULT_DAYS),
        ),
        Target(
            name="consent.ConsentContext",
            label="Proof context of consent receipts",
            timestamp_field="created_at",
            model_label="consent.ConsentContext",
            subject_q=_context_of,
            erasure=ErasureMode.LEDGER,
            accountability=True,
            default_keep=timedelta(days=ACCOUNTABILITY_DEFAULT_DAYS),
        ),
        Target(
            name="consent.Decision",
            label="Check decisions",
            timestamp_field="created_at",
            model_label="consent.Decision",
            erasure=ErasureMode.NONE,
            default_keep=timedelta(days=2 * 365),
        ),
        Target(
            name="consent.DecisionLineage",
            label="Decision lineage (allowed subjects)",
            timestamp_field="decision__created_at",
            model_label="consent.DecisionLineage",
            subject_q=_fk("subject"),
            erasure=ErasureMode.LINEAGE,
            # "Which models used this person" must answer as long as the decision exists.
            purged_with=("consent.Decision", "decision"),
            default_keep=timedelta(days=2 * 365),
        ),
        Target(
            name="governance.AuditEvent",
            label="Audit trail",
            timestamp_field="at",
            model_label="governance.AuditEvent",
            subject_q=_key("detail__subject_key"),
            subject_optional_field="detail__subject_key",
            # Append-only (trust issue): never updated; deleted only inside its guard.
            delete_guard=audit_purge_allowed,
            pg_purge=AuditDefinerPurge(),
            # Accountability (Art. 5(2)): the record of the rights request itself stays; it
            # holds only the keyed hash, as the tombstone does. (audit_purge_subject keeps
            # the same rows on PostgreSQL.)
            erasure_keep={"action__startswith": "rights."},
            never_purge={"target_type__in": POLICY_TARGET_TYPES},
            accountability=True,
            default_keep=timedelta(days=ACCOUNTABILITY_DEFAULT_DAYS),
        ),
        Target(
            name="governance.IdempotencyRecord",
            label="Stored idempotent answers",
            timestamp_field="created_at",
            model_label="governance.IdempotencyRecord",
            # Redacted answers, but the record still says the subject made a request then.
            subject_q=_key("subject_key"),
            subject_optional_field="subject_key",
            default_keep=timedelta(days=1),
        ),
        Target(
            name="governance.OutboxEvent",
            label="Outbox (announcements)",
            timestamp_field="created_at",
            model_label="governance.OutboxEvent",
            subject_q=lambda ref: Q(subject_key=ref.key) & ~Q(event_type="subject.erased"),
            default_keep=timedelta(days=30),
            default_condition={"dispatched_at__isnull": False},
        ),
        Target(
            name="retention.PurgeRun",
            label="Purge runs",
            timestamp_field="started_at",
            model_label="retention.PurgeRun",
            erasure=ErasureMode.NONE,
            default_keep=timedelta(days=365),
        ),
        Target(
            name="retention.AccessRequest",
            label="Access requests and their exports",
            timestamp_field="created_at",
            model_label="retention.AccessRequest",
            subject_q=_key("subject_key"),
            # The export goes after its period; the request itself stays as proof it was met.
            anonymize={"export_encrypted": None},
            default_keep=timedelta(days=30),
            default_action="anonymize",
        ),
    ]


def _external() -> list[Target]:
    found = []
    for spec in getattr(settings, "RETENTION_EXTERNAL_TABLES", []):
        found.append(
            Target(
                name=f"external:{spec['alias']}.{spec['table']}",
                label=spec.get("label", f"{spec['table']} in {spec['alias']}"),
                timestamp_field=spec["timestamp_column"],
                database=spec["alias"],
                table=spec["table"],
                subject_key_column=spec["subject_key_column"],
                purpose=spec.get("purpose"),
                default_keep=timedelta(days=int(spec.get("keep_days", 365))),
            )
        )
    return found


def targets() -> dict[str, Target]:
    """Every registered target by name (external ones read from settings each time)."""
    return {t.name: t for t in [*_builtin(), *_external()]}


def target_get(name: str) -> Target | None:
    return targets().get(name)


def minimum_keep(target: Target) -> timedelta:
    """The shortest period any policy may keep this target's rows (zero when no minimum)."""
    if not target.accountability:
        return timedelta(0)
    return timedelta(days=max(0, int(settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS)))


def purged_with_it(target: Target) -> list[Target]:
    """The targets whose rows this target's policy purges first (its rows' children)."""
    return [t for t in targets().values() if t.purged_with and t.purged_with[0] == target.name]


def model_fields(target: Target) -> set[str]:
    """Local concrete field names a condition may name (FK columns by their attname too)."""
    if target.external:
        return {target.timestamp_field, target.subject_key_column or ""} - {""}
    names: set[str] = set()
    for f in target.model._meta.concrete_fields:
        names.add(f.name)
        names.add(f.attname)
    return names


def field_exists(target: Target, name: str) -> bool:
    if target.external:
        return name in model_fields(target)
    try:
        target.model._meta.get_field(name)
    except FieldDoesNotExist:
        return name in model_fields(target)
    return True
