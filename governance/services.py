"""Writes to API clients and their keys, and to webhook subscriptions and deliveries."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from governance import crypto, webhooks
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_record
from governance.errors import InvalidRequest
from governance.keys import display_prefix, generate_key, hash_key
from governance.memo import memos_clear
from governance.metrics import WEBHOOK_DELIVERIES
from governance.models import (
    ApiClient,
    ApiKey,
    OutboxEvent,
    Scope,
    WebhookDelivery,
    WebhookSubscription,
)
from governance.outbox import EVENT_TYPES, outbox_erased_identifiers_forget
from governance.queue import task_queue_on_commit
from governance.selectors import deliveries_due

logger = logging.getLogger(__name__)

WEBHOOK_DELIVER_TASK = "governance.webhook_deliver"


def scopes_validate(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s.strip()})
    unknown = [s for s in cleaned if s not in Scope.values]
    if unknown:
        raise InvalidRequest(
            "Unknown scope.", detail={"unknown": unknown, "known": list(Scope.values)}
        )
    return cleaned


@transaction.atomic
def api_key_issue(
    *,
    client: ApiClient,
    actor: Actor | None = None,
    ip: str = "",
    expires_at: datetime | None = None,
) -> str:
    """Adds a key to the client and returns it in plaintext, the only time it is seen."""
    key = generate_key(client.kind)
    api_key = ApiKey.objects.create(
        client=client, prefix=display_prefix(key), key_hash=hash_key(key), expires_at=expires_at
    )
    audit_record(
        actor=actor or Actor.system(),
        action="api_key.issue",
        target_type="api_key",
        target_id=str(api_key.pk),
        ip=ip,
        detail={"client": client.name, "prefix": api_key.prefix},
    )
    return key


@transaction.atomic
def api_key_rotate(
    *,
    client: ApiClient,
    actor: Actor | None = None,
    ip: str = "",
    old_keys_expire_at: datetime | None = None,
) -> str:
    """Issues a new key; the client's other keys keep working until revoked (or until
    `old_keys_expire_at`, when given), so callers can switch without downtime."""
    if old_keys_expire_at is not None:
        ApiKey.objects.filter(client=client, revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=old_keys_expire_at)
        ).update(expires_at=old_keys_expire_at)
        memos_clear()  # a queryset update sends no model signal
    return api_key_issue(client=client, actor=actor, ip=ip)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: Actor | None = None, ip: str = "") -> ApiKey:
    """Revokes one key at once; its next request is a 401."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.revoked_at is None:
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor or Actor.system(),
            action="api_key.revoke",
            target_type="api_key",
            target_id=str(locked.pk),
            ip=ip,
            detail={"client": locked.client.name, "prefix": locked.prefix},
        )
    return locked


@transaction.atomic
def api_keys_revoke_all_but_newest(
    *, client: ApiClient, actor: Actor | None = None, ip: str = ""
) -> int:
    """Ends a rotation: every live key of the client but the newest is revoked."""
    live = list(ApiKey.objects.filter(client=client, revoked_at__isnull=True).order_by("-pk"))
    for api_key in live[1:]:
        api_key_revoke(api_key=api_key, actor=actor, ip=ip)
    return max(0, len(live) - 1)


@transaction.atomic
def api_client_create(
    *,
    name: str,
    scopes: Iterable[str] = (),
    kind: str = ApiClient.Kind.SECRET,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiClient, str]:
    if kind not in ApiClient.Kind.values:
        raise InvalidRequest(f"Unknown key kind {kind!r}.")
    cleaned = scopes_validate(scopes) if kind == ApiClient.Kind.SECRET else []
    if ApiClient.objects.filter(name=name).exists():
        raise InvalidRequest(f"An API client named {name!r} already exists.")
    client = ApiClient.objects.create(
        name=name, kind=kind, scopes=cleaned, rate_limit_per_minute=rate_limit_per_minute
    )
    return client, api_key_issue(client=client)


# --- webhooks -------------------------------------------------------------------------


def webhook_event_types_validate(event_types: Iterable[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in event_types if t.strip()})
    unknown = [t for t in cleaned if t not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            "Unknown event type.", detail={"unknown": unknown, "known": list(EVENT_TYPES)}
        )
    return cleaned


@transaction.atomic
def webhook_subscription_create(
    *,
    url: str,
    actor: Actor,
    event_types: Iterable[str] = (),
    name: str = "",
    ip: str = "",
) -> tuple[WebhookSubscription, str]:
    """Creates a subscription and returns its signing secret, the only time it is seen."""
    try:
        webhooks.url_check(url)
    except webhooks.WebhookUrlRefused as exc:
        raise InvalidRequest(str(exc), detail={"field": "url"}) from exc
    types = webhook_event_types_validate(event_types)
    secret = webhooks.secret_generate()
    subscription_id = uuid.uuid4()
    subscription = WebhookSubscription.objects.create(
        id=subscription_id,
        name=name[:120],
        url=url,
        event_types=types,
        secret_encrypted=webhooks.secret_encrypt(secret, subscription_id=subscription_id),
    )
    audit_record(
        actor=actor,
        action="webhook.create",
        target_type="webhook_subscription",
        target_id=str(subscription.pk),
        ip=ip,
        detail={"url": url, "event_types": types},
    )
    return subscription, secret


def outbox_fan_out(*, limit: int = 500, now: datetime | None = None) -> list[Any]:
    """Turns undispatched outbox events into one delivery per interested subscription and
    returns the ids of the events it dispatched.

    Rows are claimed with SKIP LOCKED so several dispatchers can run at once.
    """
    moment = now or timezone.now()
    with transaction.atomic():
        events = list(
            OutboxEvent.objects.filter(dispatched_at__isnull=True)
            .order_by("created_at", "seq")
            .select_for_update(skip_locked=True)[:limit]
        )
        if not events:
            return []
        subscriptions = list(WebhookSubscription.objects.filter(active=True))
        WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    subscription=sub,
                    event=event,
                    subject_key=event.subject_key,
                    seq=event.seq,
                    next_attempt_at=moment,
                )
                for event in events
                for sub in subscriptions
                if sub.wants(event.event_type)
            ],
            ignore_conflicts=True,
        )
        ids = [e.pk for e in events]
        OutboxEvent.objects.filter(pk__in=ids).update(dispatched_at=moment)
        erased = [e.pk for e in events if e.event_type == "subject.erased"]
        if erased:
            # An erasure announcement no subscription wants needs the identifier no more.
            outbox_erased_identifiers_forget(now=moment, event_ids=erased)
        return ids


def _delivery_body(delivery: WebhookDelivery) -> bytes:
    event = delivery.event
    identifier = None
    if event.subject_identifier_encrypted is not None:
        try:
            identifier = crypto.decrypt(
                bytes(event.subject_identifier_encrypted), aad=event.subject_key.encode()
            ).decode()
        except crypto.DecryptionFailed:
            # A key dropped before rotation finished: the receiver still gets the subject key.
            logger.warning("outbox event %s: identifier cannot be decrypted", event.pk)
    body = {
        "id": str(event.id),
        "type": event.event_type,
        "created_at": iso(event.created_at),
        "seq": event.seq,
        "subject": {"key": event.subject_key, "id": identifier} if event.subject_key else None,
        "data": event.payload,
        "attempt": delivery.attempts + 1,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _delivery_claim(*, delivery_id: int, now: datetime) -> WebhookDelivery | None:
    claim_for = timedelta(seconds=float(settings.WEBHOOK_TIMEOUT_SECONDS) + 30)
    with transaction.atomic():
        delivery = (
            deliveries_due(now=now)
            .filter(pk=delivery_id)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription", "event")
            .first()
        )
        if delivery is None:
            return None
        delivery.claimed_until = now + claim_for
        delivery.save(update_fields=["claimed_until"])
        return delivery


@dataclass(frozen=True)
class AttemptOutcome:
    status: str
    retry_in: float | None = None
    next_in_line: int | None = None


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> AttemptOutcome:
    """Tries one delivery if it is due and next in its subject's line; records the outcome.

    The HTTP call runs outside any transaction, bounded by WEBHOOK_TIMEOUT_SECONDS; the claim
    keeps a second worker from sending the same delivery meanwhile.
    """
    moment = now or timezone.now()
    delivery = _delivery_claim(delivery_id=delivery_id, now=moment)
    if delivery is None:
        return AttemptOutcome(status="skipped")
    subscription = delivery.subscription
    body = _delivery_body(delivery)
    timestamp = int(time.time())
    secret = webhooks.secret_decrypt(subscription.secret_encrypted, subscription_id=subscription.pk)
    result = webhooks.send(
        url=subscription.url,
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "consent-governance-webhooks/1",
            webhooks.ID_HEADER: str(delivery.event_id),
            webhooks.EVENT_HEADER: delivery.event.event_type,
            webhooks.SIGNATURE_HEADER: webhooks.signature(secret, timestamp=timestamp, body=body),
        },
        timeout=float(settings.WEBHOOK_TIMEOUT_SECONDS),
    )
    finished = timezone.now()
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        locked.attempts += 1
        locked.last_attempt_at = finished
        locked.last_status_code = result.status_code
        locked.last_error = result.error[:500]
        locked.claimed_until = None
        retry_in = None
        if result.ok:
            locked.status = WebhookDelivery.Status.DELIVERED
            locked.delivered_at = finished
        elif locked.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            locked.status = WebhookDelivery.Status.PARKED
        else:
            retry_in = webhooks.backoff_seconds(locked.attempts)
            locked.next_attempt_at = finished + timedelta(seconds=retry_in)
        locked.save()
    WEBHOOK_DELIVERIES.labels("retry" if retry_in is not None else locked.status).inc()
    if (
        locked.status == WebhookDelivery.Status.DELIVERED
        and delivery.event.event_type == "subject.erased"
    ):
        # The last subscriber to receive an erasure announcement lets its identifier go.
        outbox_erased_identifiers_forget(now=finished, event_ids=[locked.event_id])
    next_id = None
    if locked.status != WebhookDelivery.Status.PENDING and locked.subject_key:
        next_id = (
            WebhookDelivery.objects.filter(
                subscription_id=locked.subscription_id,
                subject_key=locked.subject_key,
                seq__gt=locked.seq,
                status=WebhookDelivery.Status.PENDING,
            )
            .order_by("seq")
            .values_list("pk", flat=True)
            .first()
        )
    return AttemptOutcome(status=locked.status, retry_in=retry_in, next_in_line=next_id)


@transaction.atomic
def webhook_delivery_redeliver(
    *, deliveries: Iterable[WebhookDelivery], actor: Actor, ip: str = ""
) -> list[int]:
    """Puts parked (or delivered) deliveries back in line, to be tried again from scratch.

    The receiver sees the event's original per-subject seq, so it can tell a stale
    redelivery from news.
    """
    ids = [d.pk for d in deliveries]
    now = timezone.now()
    WebhookDelivery.objects.filter(pk__in=ids).update(
        status=WebhookDelivery.Status.PENDING,
        attempts=0,
        next_attempt_at=now,
        claimed_until=None,
    )
    audit_record(
        actor=actor,
        action="webhook.redeliver",
        target_type="webhook_delivery",
        target_id=",".join(str(i) for i in ids)[:128],
        ip=ip,
        detail={"deliveries": ids},
    )
    for delivery_id in ids:
        task_queue_on_commit(WEBHOOK_DELIVER_TASK, delivery_id=delivery_id)
    return ids
