"""Reads of the shared infrastructure that need more than one line of ORM."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, Min, OuterRef, Q, QuerySet

from governance.models import OutboxEvent, WebhookDelivery


def deliveries_due(*, now: datetime) -> QuerySet[WebhookDelivery]:
    """Pending deliveries whose time has come, unclaimed, and first in their subject's line.

    A delivery waits while an earlier event of the same subject is still pending for the same
    subscription (or not yet fanned out); a parked or delivered one no longer holds it back.
    """
    earlier_pending = WebhookDelivery.objects.filter(
        subscription_id=OuterRef("subscription_id"),
        subject_key=OuterRef("subject_key"),
        seq__lt=OuterRef("seq"),
        status=WebhookDelivery.Status.PENDING,
    )
    earlier_undispatched = OutboxEvent.objects.filter(
        subject_key=OuterRef("subject_key"),
        seq__lt=OuterRef("seq"),
        dispatched_at__isnull=True,
    )
    return (
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            subscription__active=True,
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(~Exists(earlier_pending), ~Exists(earlier_undispatched))
    )


def outbox_lag_seconds(*, now: datetime) -> float:
    """How long the oldest undispatched outbox event has waited (0 when none waits)."""
    # An aggregate, not ORDER BY ... LIMIT 1, which PostgreSQL may serve by walking the
    # created_at index through every dispatched event; this reads the undispatched only.
    oldest = OutboxEvent.objects.filter(dispatched_at__isnull=True).aggregate(
        oldest=Min("created_at")
    )["oldest"]
    return max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0


def deliveries_parked_count() -> int:
    """Deliveries given up on, waiting for a redelivery from the admin."""
    return WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PARKED).count()
