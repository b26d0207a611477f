"""Thin Celery tasks of the consent app: consent expiry."""

from __future__ import annotations

from celery import shared_task

from consent.ledger.expiry import consent_expire_due

# Registered under retention's name: the beat schedule seeded by
# retention/migrations/0002 runs it by this name, so keeping it needs no migration.
CONSENT_EXPIRE_TASK = "retention.expire_consents"


@shared_task(name=CONSENT_EXPIRE_TASK, soft_time_limit=240, time_limit=300)
def consent_expire_task(batch: int = 500) -> int:
    total = 0
    while True:
        done = consent_expire_due(batch=batch)
        total += done
        if done < batch:
            return total
