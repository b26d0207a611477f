"""Thin Celery tasks of the consent app: consent expiry, building and expiring snapshots,
the banner's `shown` counts, the ledger's chain check and applying imports."""

from __future__ import annotations

from celery import shared_task

from consent.imports import services as imports
from consent.ledger.expiry import consent_expire_due
from consent.ledger.verify import ledger_verify_recorded
from consent.reports.services import banner_shown_flush
from consent.snapshots import services as snapshots

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


# A build step is safe to run twice (ranges are claimed under a lease, files replaced
# whole), so a lost worker's message may be redelivered.
@shared_task(
    name=snapshots.SNAPSHOT_BUILD_TASK, acks_late=True, soft_time_limit=540, time_limit=600
)
def snapshot_build_task(snapshot_id: str) -> str:
    step = snapshots.snapshot_build_step(snapshot_id=snapshot_id)
    if step.more:
        snapshot_build_task.delay(snapshot_id=snapshot_id)
    return step.outcome


@shared_task(name=snapshots.SNAPSHOTS_EXPIRE_TASK, soft_time_limit=240, time_limit=300)
def snapshots_expire_task() -> int:
    return snapshots.snapshots_expire()


@shared_task(name=snapshots.SNAPSHOTS_RESUME_TASK, soft_time_limit=50, time_limit=60)
def snapshots_resume_task() -> int:
    return snapshots.snapshots_resume()


@shared_task(name="consent.banner_shown_flush", soft_time_limit=50, time_limit=60)
def banner_shown_flush_task() -> int:
    return banner_shown_flush()


@shared_task(name="consent.ledger_verify", soft_time_limit=3300, time_limit=3600)
def ledger_verify_task() -> int:
    """The whole ledger's chain check, recorded for the admin dashboard; returns the breaks."""
    return len(ledger_verify_recorded(trigger="beat").breaks)


# A step is safe to run twice (batches are applied under the import's lock, each marked
# done with its writes), so a lost worker's message may be redelivered.
@shared_task(name=imports.IMPORT_APPLY_TASK, acks_late=True, soft_time_limit=540, time_limit=600)
def import_apply_task(import_id: str) -> str:
    outcome = imports.import_apply(import_id=import_id, seconds=60)
    if outcome == "batch":
        import_apply_task.delay(import_id=import_id)
    return outcome


@shared_task(name=imports.IMPORTS_RESUME_TASK, soft_time_limit=50, time_limit=60)
def imports_resume_task() -> int:
    return imports.imports_resume()
