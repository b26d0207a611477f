"""Writes of the Person page that no other service covers: a withdrawal of every consent
taken by staff, with their note kept encrypted beside it."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from consent.ledger.write import RecordResult
from consent.models import IndicationMethod, Source, Subject, SubjectNote
from consent.services import consent_withdraw
from governance import crypto
from governance.actors import Actor
from governance.audit import audit_record
from governance.errors import InvalidRequest


def subject_note_add(
    *,
    subject: Subject,
    action: str,
    note: str,
    actor: Actor,
    receipt_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> SubjectNote:
    """A staff note on an action taken for the person, encrypted (it may hold personal
    data); call it inside the action's transaction."""
    if not note.strip():
        raise InvalidRequest("A note is required.", detail={"field": "note"})
    row = SubjectNote(
        subject=subject,
        action=action,
        receipt_id=receipt_id,
        author=actor.label[:200],
        created_at=now or timezone.now(),
    )
    row.note_encrypted = crypto.encrypt(note.encode("utf-8"), aad=str(row.pk).encode())
    row.save(force_insert=True)
    return row


def person_withdraw_all(
    *,
    subject: Subject,
    identifier: str,
    note: str,
    actor: Actor,
    now: datetime | None = None,
) -> RecordResult:
    """Withdraws every standing grant of the person (the ledger's own withdrawal, source
    `admin`), keeps the staff note, and audits the staff action, in one transaction."""
    if not note.strip():
        raise InvalidRequest("A note is required.", detail={"field": "note"})
    moment = now or timezone.now()
    with transaction.atomic():
        result = consent_withdraw(
            subject_id=identifier,
            actor=actor,
            source=Source.ADMIN,
            # The person asked staff, who relay that explicit choice.
            indication_method=IndicationMethod.API,
            namespace=subject.namespace,
            now=moment,
        )
        written = subject_note_add(
            subject=subject,
            action="withdraw_all",
            note=note,
            actor=actor,
            receipt_id=result.receipt_id,
            now=moment,
        )
        audit_record(
            actor=actor,
            action="person.withdraw_all",
            target_type="subject",
            target_id=str(subject.pk),
            detail={
                "subject_key": subject.key,
                "receipt_id": str(result.receipt_id) if result.receipt_id else None,
                "withdrawn": [e.purpose.key for e in result.events if e.purpose],
                "note_id": str(written.pk),
            },
        )
    return result
