"""Operational tasks of the service itself: ping, outbox dispatch, webhook delivery."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from governance import services
from governance.outbox import OUTBOX_DISPATCH_TASK, outbox_erased_identifiers_forget
from governance.selectors import deliveries_due

logger = logging.getLogger(__name__)


@shared_task(name="governance.ping", soft_time_limit=10, time_limit=20)
def ping_task(token: str) -> str:
    """Echoes its argument: proves a worker consumes from the broker and returns results."""
    return f"pong:{token}"


def _enqueue(delivery_id: int, countdown: float | None = None) -> None:
    webhook_deliver_task.apply_async((delivery_id,), countdown=countdown)


@shared_task(name=OUTBOX_DISPATCH_TASK, soft_time_limit=120, time_limit=150)
def outbox_dispatch_task(sweep: bool = True, limit: int = 1000) -> int:
    """Fans undispatched outbox events out to subscriptions and queues their deliveries.

    Queued after each commit that writes to the outbox (sweep=False: only the deliveries of
    the events it fans out are queued, so a backlog is not queued again on every commit),
    and by beat as a sweeper (sweep=True: every due delivery, so events written while the
    broker was down, and retries whose message was lost, go out). Safe to run twice.
    The sweep also lets go of erased identifiers whose parked deliveries waited long enough.
    """
    if sweep:
        outbox_erased_identifiers_forget()
    dispatched: list[object] = []
    while True:
        batch = services.outbox_fan_out(limit=500)
        dispatched += batch
        if len(batch) < 500:
            break
    due = deliveries_due(now=timezone.now())
    if not sweep:
        due = due.filter(event_id__in=dispatched)
    for delivery_id in due.order_by("seq").values_list("pk", flat=True)[:limit]:
        _enqueue(delivery_id)
    return len(dispatched)


@shared_task(name=services.WEBHOOK_DELIVER_TASK, soft_time_limit=60, time_limit=90)
def webhook_deliver_task(delivery_id: int) -> str:
    """One attempt at one delivery; schedules its retry, or the next in its subject's line."""
    outcome = services.webhook_delivery_attempt(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        _enqueue(delivery_id, countdown=outcome.retry_in)
    if outcome.next_in_line is not None:
        _enqueue(outcome.next_in_line)
    return outcome.status
