"""Thin Celery tasks of the consent app: consent expiry, the banner's `shown` counts and the
ledger's chain check."""

from __future__ import annotations

from celery import shared_task

from consent.ledger.expiry import consent_expire_due
from consent.ledger.verify import ledger_verify_recorded
from consent.reports.services import banner_shown_flush

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


@shared_task(name="consent.banner_shown_flush", soft_time_limit=50, time_limit=60)
def banner_shown_flush_task() -> int:
    return banner_shown_flush()


@shared_task(name="consent.ledger_verify", soft_time_limit=3300, time_limit=3600)
def ledger_verify_task() -> int:
    """The whole ledger's chain check, recorded for the admin dashboard; returns the breaks."""
    return len(ledger_verify_recorded(trigger="beat").breaks)
