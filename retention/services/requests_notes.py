"""What a rights request records beside its work: its due date (GDPR Art. 12(3): a month,
extendable once by two with a reason) and staff's notes on it, which may hold personal
data: encrypted (associated data: the request's id and the field) and destroyed by the
person's erasure."""

from __future__ import annotations

import calendar
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from consent.models import (
    SubjectNote,
)
from governance import crypto
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_record
from governance.errors import InvalidRequest
from retention.errors import RequestAlreadyExtended
from retention.models import (
    AccessRequest,
    ErasureRequest,
    RequestStatus,
)


def add_month(moment: datetime) -> datetime:
    """The same day next month (the last day when that month is shorter), GDPR Art. 12(3)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# The free-text fields of a rights request, each encrypted with the request's id and the
# field's name as associated data (so one cannot be swapped for the other).


NOTE_FIELDS = ("verification_note_encrypted", "extension_reason_encrypted")


def note_aad(request: ErasureRequest | AccessRequest, field: str) -> bytes:
    return f"{request.pk}:{field}".encode()


def note_encrypt(request: ErasureRequest | AccessRequest, field: str, text: str) -> bytes:
    return crypto.encrypt(text.encode("utf-8"), aad=note_aad(request, field))


def note_read(request: ErasureRequest | AccessRequest, field: str) -> str | None:
    """A request's note or extension reason, decrypted for staff; None when absent."""
    blob = getattr(request, field)
    if blob is None:
        return None
    return crypto.decrypt(bytes(blob), aad=note_aad(request, field)).decode("utf-8")


def notes_destroy(*, key: str, namespace: str) -> None:
    """The person's erasure takes the staff notes about them: those on their rights
    requests and those on actions taken for them (consent.SubjectNote)."""
    cleared = dict.fromkeys(NOTE_FIELDS)
    for model in (ErasureRequest, AccessRequest):
        model.objects.filter(subject_key=key, namespace=namespace).update(**cleared)
    SubjectNote.objects.filter(subject__namespace=namespace, subject__key=key).delete()


def rights_request_extend(
    *,
    request: ErasureRequest | AccessRequest,
    reason: str,
    actor: Actor,
    now: datetime | None = None,
) -> ErasureRequest | AccessRequest:
    """Extends an open request's due date by two months (GDPR Art. 12(3)), once, with the
    reason recorded (encrypted): the person must be told of it within the first month."""
    if not reason.strip():
        raise InvalidRequest("An extension needs a reason.", detail={"field": "reason"})
    moment = now or timezone.now()
    with transaction.atomic():
        locked = type(request).objects.select_for_update().get(pk=request.pk)
        if locked.extended_at is not None:
            raise RequestAlreadyExtended()
        if locked.status == RequestStatus.COMPLETE:
            raise InvalidRequest("A completed request cannot be extended.")
        locked.due_at = add_month(add_month(locked.due_at))
        locked.extended_at = moment
        locked.extended_by = actor.label[:200]
        locked.extension_reason_encrypted = note_encrypt(
            locked, "extension_reason_encrypted", reason
        )
        locked.save(
            update_fields=["due_at", "extended_at", "extended_by", "extension_reason_encrypted"]
        )
        audit_record(
            actor=actor,
            action="rights.extend",
            target_type=type(locked).__name__,
            target_id=str(locked.pk),
            detail={"subject_key": locked.subject_key, "due_at": iso(locked.due_at)},
        )
    return locked
