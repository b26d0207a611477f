"""Thin Celery tasks: each takes ids or nothing and calls one service."""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task
from deltalake.exceptions import CommitFailedError

from retention.services import enforcement, propagation, rekey, rights

# Enforcement stops starting new policies after this, leaving room before the soft limit;
# the task then queues its continuation (every chunk is found again by its predicate).
ENFORCE_BUDGET_SECONDS = 480


@shared_task(name=enforcement.ENFORCE_TASK, soft_time_limit=540, time_limit=600)
def retention_enforce_task(run_id: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    result = enforcement.retention_enforce(
        dry_run=dry_run,
        trigger="task",
        run_id=uuid.UUID(run_id) if run_id else None,
        budget_seconds=ENFORCE_BUDGET_SECONDS,
    )
    if result.more_to_do:
        retention_enforce_task.delay()
    run = result.run
    return {"run_id": str(run.pk), "status": run.status, "removed": run.removed}


@shared_task(name="retention.propagate_withdrawals", soft_time_limit=240, time_limit=300)
def withdrawals_propagate_task(batch: int = 500) -> int:
    total = 0
    while True:
        done = propagation.withdrawals_propagate(batch=batch)
        total += done
        if done < batch:
            return total


# Erasure and access are safe to run twice (each step recorded), so a lost worker's message
# may be redelivered; the sweeper also re-queues them from database state.
@shared_task(name=rights.ERASURE_TASK, acks_late=True, soft_time_limit=540, time_limit=600)
def erasure_execute_task(request_id: str) -> str:
    return rights.erasure_execute(request_id=request_id).status


@shared_task(name=rights.ACCESS_TASK, acks_late=True, soft_time_limit=240, time_limit=300)
def access_execute_task(request_id: str) -> str:
    return rights.access_execute(request_id=request_id).status


@shared_task(name="retention.sweep_rights_requests", soft_time_limit=50, time_limit=60)
def rights_requests_sweep_task() -> dict[str, list[str]]:
    return rights.rights_requests_sweep()


# Idempotent (an UPDATE or a Delta merge from the old key to the new one), so a redelivery
# is harmless, and so is a retry after a lake table's merge lost a commit race to another
# writer (transient; nothing else re-queues a re-key).
@shared_task(
    name=rekey.REKEY_EXTERNAL_TASK,
    acks_late=True,
    soft_time_limit=240,
    time_limit=300,
    autoretry_for=(CommitFailedError,),
    retry_backoff=True,
    max_retries=5,
)
def external_tables_rekey_task(key_change_id: int) -> int:
    return rekey.external_tables_rekey(key_change_id=key_change_id)
