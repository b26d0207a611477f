"""Writes of restriction periods (Art. 18): place, lift, and forget with the person.

Each place or lift locks the subject's row (as a consent write does), so the one-open-period
rule and the outbox's per-subject order hold under concurrent requests; the audit row and the
`subject.restricted` / `subject.restriction_lifted` announcement (Art. 19) go in the same
transaction. Consent writes are not touched: they are still recorded during a period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from consent import identity
from consent.errors import AlreadyRestricted, NotRestricted
from consent.ledger.store import SubjectRef
from consent.ledger.write import ledger_store
from consent.models import Restriction, Subject
from consent.restriction.selectors import restriction_aad, restriction_open, restriction_periods
from governance import crypto
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_record
from governance.errors import InvalidRequest
from governance.outbox import outbox_enqueue

MAX_REASON_LENGTH = 2000


def restriction_place(
    *,
    subject_id: str,
    namespace: str,
    reason: str,
    actor: Actor,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Opens a period from `now` for the subject, made a subject if the service never saw
    it; AlreadyRestricted (409) while one is open. Returns every period of the subject."""
    identity.validate_identifier(subject_id)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(
            f"reason must be a non-blank string of at most {MAX_REASON_LENGTH} characters.",
            detail={"field": "reason"},
        )
    moment = now or timezone.now()
    with transaction.atomic():
        locked = ledger_store().subject_lock(SubjectRef.of(subject_id, namespace), states=False)
        assert locked is not None  # an identifier creates the subject
        subject = locked[0]
        if restriction_open(subject=subject) is not None:
            raise AlreadyRestricted()
        last_end = Restriction.objects.filter(subject=subject).aggregate(end=Max("ended_at"))["end"]
        if last_end is not None and last_end > moment:
            # Periods never overlap: the checks' join relies on it.
            raise InvalidRequest("A restriction cannot start before the previous one ended.")
        period = Restriction(subject=subject, started_at=moment, started_by=actor.label[:200])
        period.reason_encrypted = crypto.encrypt(reason.encode(), aad=restriction_aad(period))
        period.save(force_insert=True)
        _announce(subject, subject_id, "subject.restricted", period)
        audit_record(
            actor=actor,
            action="rights.restriction_place",
            target_type="restriction",
            target_id=str(period.pk),
            detail={"subject_key": subject.key, "namespace": namespace},
        )
        return restriction_periods(subject=subject)


def restriction_lift(
    *,
    subject_id: str,
    namespace: str,
    actor: Actor,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Ends the subject's open period at `now`; NotRestricted (409) when none is open (an
    unknown subject included). Returns every period of the subject."""
    identity.validate_identifier(subject_id)
    moment = now or timezone.now()
    with transaction.atomic():
        ref = SubjectRef(namespace=namespace, key=identity.subject_key(subject_id))
        locked = ledger_store().subject_lock(ref, states=False)
        period = restriction_open(subject=locked[0]) if locked is not None else None
        if locked is None or period is None:
            raise NotRestricted()
        subject = locked[0]
        if moment < period.started_at:
            raise InvalidRequest("A restriction cannot end before it started.")
        period.ended_at = moment
        period.ended_by = actor.label[:200]
        period.save(update_fields=["ended_at", "ended_by"])
        _announce(subject, subject_id, "subject.restriction_lifted", period)
        audit_record(
            actor=actor,
            action="rights.restriction_lift",
            target_type="restriction",
            target_id=str(period.pk),
            detail={"subject_key": subject.key, "namespace": namespace},
        )
        return restriction_periods(subject=subject)


def _announce(subject: Subject, identifier: str, event_type: str, period: Restriction) -> None:
    """Tells the recipients (Art. 19), naming the person as consent announcements do; the
    reason stays here."""
    outbox_enqueue(
        event_type=event_type,
        payload={
            "restriction_id": str(period.pk),
            "namespace": subject.namespace,
            "started_at": iso(period.started_at),
            "ended_at": iso(period.ended_at),
        },
        subject_key=subject.key,
        subject_identifier=identifier,
    )


def restrictions_forget_subject(*, subject: Subject) -> int:
    """Removes the subject's periods, reasons and all: erasure's step (Art. 17), inside its
    transaction. Returns how many went."""
    removed, _ = Restriction.objects.filter(subject=subject).delete()
    return int(removed)
