"""The outbox: announcements written in the same transaction as their change.

Delivery (webhooks) reads from here after commit, so a broker outage loses nothing: the
rows wait until a dispatcher picks them up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from governance import crypto
from governance.models import OutboxEvent, WebhookDelivery
from governance.queue import task_send

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "consent.granted",
    "consent.refused",
    "consent.withdrawn",
    "consent.expired",
    "subject.erased",
    "subject.rectified",
    "subject.restricted",
    "subject.restriction_lifted",
    "retention.run_completed",
    "import.completed",
)


def outbox_build(
    *,
    event_type: str,
    payload: dict[str, Any],
    subject_key: str = "",
    subject_identifier: str | None = None,
    seq: int = 0,
) -> OutboxEvent:
    """The unsaved row: checks the type and encrypts the identifier. See outbox_enqueue."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown outbox event type {event_type!r}")
    encrypted = (
        crypto.encrypt(subject_identifier.encode(), aad=subject_key.encode())
        if subject_identifier is not None
        else None
    )
    return OutboxEvent(
        event_type=event_type,
        subject_key=subject_key,
        subject_identifier_encrypted=encrypted,
        seq=seq,
        payload=payload,
        created_at=timezone.now(),
    )


def outbox_enqueue(
    *,
    event_type: str,
    payload: dict[str, Any],
    subject_key: str = "",
    subject_identifier: str | None = None,
) -> OutboxEvent:
    """Call inside the transaction of the change, with the subject's row already locked
    (so the per-subject sequence cannot race)."""
    event = outbox_build(
        event_type=event_type,
        payload=payload,
        subject_key=subject_key,
        subject_identifier=subject_identifier,
        seq=outbox_next_seq(subject_key) if subject_key else 0,
    )
    event.save(force_insert=True)
    outbox_dispatch_on_commit()
    return event


def outbox_erased_identifiers_forget(
    *, now: datetime | None = None, event_ids: Iterable[Any] | None = None
) -> int:
    """Nulls the identifier of `subject.erased` announcements that no delivery needs any
    more, so a completed erasure leaves the person's identifier nowhere; returns how many.

    A delivery needs it while it is pending to an active subscription, or while it is
    parked (or pending to a paused subscription) and its last attempt is younger than
    WEBHOOK_ERASED_IDENTIFIER_KEEP_DAYS: the admin may still redeliver it. An announcement
    no subscription wanted needs it no more once fanned out. Later redeliveries carry
    the subject key alone.
    """
    moment = now or timezone.now()
    cutoff = moment - timedelta(days=settings.WEBHOOK_ERASED_IDENTIFIER_KEEP_DAYS)
    waiting = (
        WebhookDelivery.objects.filter(event_id=OuterRef("pk"))
        .exclude(status=WebhookDelivery.Status.DELIVERED)
        .annotate(last_seen=Coalesce("last_attempt_at", "created_at"))
        .filter(
            Q(status=WebhookDelivery.Status.PENDING, subscription__active=True)
            | Q(last_seen__gt=cutoff)
        )
    )
    done = OutboxEvent.objects.filter(
        event_type="subject.erased",
        subject_identifier_encrypted__isnull=False,
        dispatched_at__isnull=False,
    ).exclude(Exists(waiting))
    if event_ids is not None:
        done = done.filter(pk__in=list(event_ids))
    return done.update(subject_identifier_encrypted=None)


def outbox_rekey(*, old_key: str, new_key: str, identifier: str) -> int:
    """Moves a subject's announcements (and their deliveries) to its new key after an
    identifier rectification, after any the new key already has, in their order; their
    identifier becomes the rectified one. Inside the rectification's transaction, under the
    subject's lock. Returns how many moved."""
    offset = outbox_next_seq(new_key) - 1
    moved = list(OutboxEvent.objects.filter(subject_key=old_key).order_by("seq"))
    for event in moved:
        event.subject_key = new_key
        event.seq += offset
        if event.subject_identifier_encrypted is not None:
            event.subject_identifier_encrypted = crypto.encrypt(
                identifier.encode(), aad=new_key.encode()
            )
    OutboxEvent.objects.bulk_update(
        moved, ["subject_key", "seq", "subject_identifier_encrypted"], batch_size=500
    )
    WebhookDelivery.objects.filter(subject_key=old_key).update(
        subject_key=new_key, seq=F("seq") + offset
    )
    return len(moved)


def outbox_next_seq(subject_key: str) -> int:
    """The subject's next outbox sequence number; its row lock must be held."""
    last = OutboxEvent.objects.filter(subject_key=subject_key).aggregate(m=Max("seq"))["m"]
    return (last or 0) + 1


# outbox_next_seq as SQL, for writes that insert in one statement (governance.db): each
# row's `seq` holds its place, from 1, among the rows of its subject in that statement.
OUTBOX_NEXT_SEQ_SQL = (
    "(SELECT COALESCE(MAX(o.seq), 0) FROM governance_outboxevent o"
    " WHERE o.subject_key = r.subject_key) + r.seq"
)


def outbox_dispatch_on_commit() -> None:
    """Asks for a dispatch once the current transaction commits (once per transaction)."""
    if settings.WEBHOOK_DISPATCH_ON_COMMIT and not _dispatch_already_queued():
        transaction.on_commit(outbox_dispatch_notify)


def _dispatch_already_queued() -> bool:
    # One dispatch per transaction is enough: it fans out every undispatched row.
    return any(entry[1] is outbox_dispatch_notify for entry in connection.run_on_commit)


_coalesce_until = 0.0
OUTBOX_DISPATCH_TASK = "governance.outbox_dispatch"


def outbox_dispatch_notify() -> None:
    """Asks a worker to dispatch. With the broker down this only logs: the rows stay in
    the outbox and the beat-scheduled sweeper delivers them once the broker is back.

    Under load, one dispatch per short window (WEBHOOK_DISPATCH_COALESCE_SECONDS) serves
    every commit of that window: the task runs at the window's end and fans out every
    undispatched row, so a commit whose notice was coalesced is still picked up.
    """
    global _coalesce_until
    from kombu.exceptions import OperationalError

    window = float(settings.WEBHOOK_DISPATCH_COALESCE_SECONDS)
    now = time.monotonic()
    if window > 0 and now < _coalesce_until:
        return
    _coalesce_until = now + window
    try:
        task_send(OUTBOX_DISPATCH_TASK, {"sweep": False}, countdown=window or None, retry=False)
    except (OperationalError, OSError) as exc:
        logger.warning(
            "outbox dispatch not queued, broker unavailable (%s); the sweeper will deliver",
            type(exc).__name__,
        )
