"""Identifier rectification (GDPR Art. 16): a subject's identifier is replaced by the
correct one, and with it the keyed hash every store finds the subject by.

History is never re-hashed: the ledger gets a `rectified` event (the first hashed with the
new key) and a key-change row, and the verifier checks each event with the key in force at
its position. Everything else keyed by the old key moves to the new one in the same
transaction, under the subject's lock: the outbox and its deliveries (in order), stored
idempotent answers, and what other apps register (retention: legal holds, rights requests,
and a task for the external tables). Afterwards the old identifier is one never seen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from consent import identity
from consent.errors import IdentifierInUse
from consent.ledger.store import Rows, SubjectRef
from consent.ledger.write import Write, ledger_store, rectified_event_build
from consent.models import GivenBy, IndicationMethod, Source, Subject
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_build
from governance.errors import NotFound
from governance.models import IdempotencyRecord
from governance.outbox import outbox_build, outbox_dispatch_on_commit, outbox_rekey


@dataclass(frozen=True)
class SubjectRekeyed:
    """What a re-key hook learns, inside the rectification's transaction."""

    namespace: str
    old_key: str
    new_key: str
    new_identifier: str
    key_change_id: int


@dataclass(frozen=True)
class RectifyResult:
    subject_id: str
    event_id: uuid.UUID


# Stores outside this app that name subjects by key (retention's), registered at startup:
# consent never imports them.
SUBJECT_REKEY_HOOKS: list[Callable[[SubjectRekeyed], None]] = []


def subject_rekey_register(hook: Callable[[SubjectRekeyed], None]) -> None:
    if hook not in SUBJECT_REKEY_HOOKS:
        SUBJECT_REKEY_HOOKS.append(hook)


_SOURCES = {"api_client": Source.API, "staff": Source.ADMIN}


def subject_rectify(
    *,
    subject_id: str,
    namespace: str,
    new_subject_id: str,
    actor: Actor,
    now: datetime | None = None,
) -> RectifyResult:
    """Re-keys a known subject to `new_subject_id`, in one transaction. NotFound for an
    unknown or erased subject; IdentifierInUse when the new identifier names a subject."""
    identity.validate_identifier(subject_id)
    identity.validate_identifier(new_subject_id, field="new_subject_id")
    moment = now or timezone.now()
    old_key, new_key = identity.subject_key(subject_id), identity.subject_key(new_subject_id)
    store = ledger_store()
    with transaction.atomic():
        locked = store.subject_lock(SubjectRef(namespace=namespace, key=old_key), states=False)
        if locked is None or locked[0].identifier_encrypted is None:
            raise NotFound()
        head = locked[0]
        if Subject.objects.filter(namespace=namespace, key=new_key).exists():
            raise IdentifierInUse()
        try:
            with transaction.atomic():
                Subject.objects.filter(pk=head.pk).update(
                    key=new_key,
                    key_version=settings.SUBJECT_HASH_KEY_VERSION,
                    identifier_encrypted=identity.encrypt_identifier(new_subject_id, key=new_key),
                )
        except IntegrityError as exc:  # a concurrent first write of the new identifier
            raise IdentifierInUse() from exc
        write = Write(
            actor=actor,
            source=_SOURCES.get(actor.type, Source.SYSTEM),
            indication_method=IndicationMethod.SYSTEM,
            given_by=GivenBy.SUBJECT,
        )
        event, change = rectified_event_build(
            subject=head, new_key=new_key, write=write, now=moment
        )
        change.save(force_insert=True)
        outbox_rekey(old_key=old_key, new_key=new_key, identifier=new_subject_id)
        IdempotencyRecord.objects.filter(subject_key=old_key).update(subject_key=new_key)
        rekeyed = SubjectRekeyed(
            namespace=namespace,
            old_key=old_key,
            new_key=new_key,
            new_identifier=new_subject_id,
            key_change_id=change.pk,
        )
        for hook in SUBJECT_REKEY_HOOKS:
            hook(rekeyed)
        announcement = outbox_build(
            event_type="subject.rectified",
            payload={
                "event_id": str(event.id),
                "namespace": namespace,
                "old_subject_key": old_key,
                "new_subject_key": new_key,
                "rectified_at": iso(moment),
            },
            subject_key=new_key,
            subject_identifier=new_subject_id,
        )
        audit = audit_build(
            actor=actor,
            action="subject.rectify",
            target_type="subject",
            target_id=str(head.pk),
            # Keys only: never a plaintext identifier in the trail. Erasure finds the row by
            # the new key; the old one is a former key it reaches too.
            detail={"subject_key": new_key, "old_subject_key": old_key, "event_id": str(event.id)},
        )
        store.append(
            Rows(
                subject=head,
                events=[event],
                states=[],
                announcements=[announcement],
                audits=[audit],
            )
        )
        outbox_dispatch_on_commit()
    return RectifyResult(subject_id=new_subject_id, event_id=event.id)
