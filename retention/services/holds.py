"""Legal holds: on a subject (named by identifier, kept by keyed hash) or on a policy; a
hold keeps rows from every purge and erasure until it is released."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from consent import identity
from consent.models import Subject
from governance.actors import Actor
from governance.audit import audit_record
from governance.errors import InvalidRequest
from retention.models import LegalHold, RetentionPolicy


@transaction.atomic
def hold_place(
    *,
    reason: str,
    actor: Actor,
    subject_id: str | None = None,
    namespace: str = Subject.Namespace.ACCOUNT,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
) -> LegalHold:
    """A hold on a subject (named by identifier, stored by keyed hash) or on a policy."""
    if (subject_id is None) == (policy is None):
        raise InvalidRequest("A legal hold names either a subject or a policy.")
    if not reason.strip():
        raise InvalidRequest("A legal hold needs a reason.", detail={"field": "reason"})
    key = ""
    if subject_id is not None:
        identity.validate_identifier(subject_id)
        key = identity.subject_key(subject_id)
    hold = LegalHold.objects.create(
        subject_key=key,
        namespace=namespace,
        policy=policy,
        reason=reason[:500],
        created_by=actor.label[:200],
        created_at=now or timezone.now(),
    )
    audit_record(
        actor=actor,
        action="retention.hold_place",
        target_type="legal_hold",
        target_id=str(hold.pk),
        detail={"subject_key": key, "policy": policy.pk if policy else None},
    )
    return hold


@transaction.atomic
def hold_release(*, hold: LegalHold, actor: Actor, now: datetime | None = None) -> LegalHold:
    hold.released_at = now or timezone.now()
    hold.save(update_fields=["released_at"])
    audit_record(
        actor=actor,
        action="retention.hold_release",
        target_type="legal_hold",
        target_id=str(hold.pk),
    )
    return hold
