"""The outbox: announcements written in the same transaction as their change.

Delivery (webhooks) reads from here after commit, so a broker outage loses nothing: the
rows wait until a dispatcher picks them up.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Max
from django.utils import timezone

from governance import crypto
from governance.models import OutboxEvent

EVENT_TYPES = (
    "consent.granted",
    "consent.refused",
    "consent.withdrawn",
    "consent.expired",
    "subject.erased",
    "retention.run_completed",
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
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown outbox event type {event_type!r}")
    seq = 0
    if subject_key:
        last = OutboxEvent.objects.filter(subject_key=subject_key).aggregate(m=Max("seq"))["m"]
        seq = (last or 0) + 1
    encrypted = (
        crypto.encrypt(subject_identifier.encode(), aad=subject_key.encode())
        if subject_identifier is not None
        else None
    )
    return OutboxEvent.objects.create(
        event_type=event_type,
        subject_key=subject_key,
        subject_identifier_encrypted=encrypted,
        seq=seq,
        payload=payload,
        created_at=timezone.now(),
    )
