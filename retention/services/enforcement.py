"""Enforcement: one run over the enabled policies, each handed to its target's `count`
(dry runs, held policies) or `purge`, under the lease, recorded as a PurgeRun with one item
per policy. A run cut short by its time budget says so (`more_to_do`): every chunk is found
again by its predicate, so the next run continues."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from governance.actors import Actor
from governance.audit import audit_record
from governance.metrics import PURGE_ROWS, PURGE_RUNS
from governance.outbox import outbox_enqueue
from governance.queue import task_queue_on_commit
from retention import selectors
from retention.errors import InvalidPolicy, LeaseLost, UnknownTarget
from retention.models import PurgeRun, PurgeRunItem, RetentionPolicy
from retention.registry import minimum_keep, target_get
from retention.services import SYSTEM
from retention.services.lease import (
    ENFORCE_LEASE,
    lease_acquire,
    lease_release,
    lease_renew,
    lease_ttl,
)
from retention.targets.base import Progress, Sweep, Tally

logger = logging.getLogger(__name__)

ENFORCE_TASK = "retention.enforce"


@dataclass
class _Clock:
    """The run's notion of now: the instant it was given, advanced by wall time since."""

    start: datetime
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


class _RunProgress(Progress):
    """Each chunk renews the lease and writes the item's progress, in the chunk's own
    transaction (a lost lease rolls the chunk back)."""

    def __init__(self, *, item: PurgeRunItem, clock: _Clock, holder: str | None) -> None:
        self.item, self.clock, self.holder = item, clock, holder
        self.removed = 0
        self.chunks = 0

    def renew(self, count: int = 0) -> None:
        if self.holder is not None:
            lease_renew(
                name=ENFORCE_LEASE, holder=self.holder, now=self.clock.now(), ttl=lease_ttl()
            )

    def chunk(self, count: int) -> None:
        self.removed += count
        self.chunks += 1
        self.renew()
        PurgeRunItem.objects.filter(pk=self.item.pk).update(
            removed=self.removed, chunks=self.chunks
        )


def _policy_enforce(
    *, policy: RetentionPolicy, run: PurgeRun, clock: _Clock, holder: str | None
) -> PurgeRunItem:
    now = clock.now()
    target = target_get(policy.target)
    # A policy saved before the minimum existed (or written around the services) still
    # never purges accountability records younger than it.
    keep_for = max(policy.keep_for, minimum_keep(target)) if target else policy.keep_for
    cutoff = now - keep_for
    item = PurgeRunItem.objects.create(
        run=run,
        policy=policy,
        policy_name=policy.name,
        target=policy.target,
        action=policy.action,
        cutoff=cutoff,
    )
    t0 = time.monotonic()
    try:
        if target is None:
            raise UnknownTarget(f"No registered retention target {policy.target!r}.")
        if target.purged_with is not None:
            raise InvalidPolicy(f"{target.name} goes with {target.purged_with[0]}'s policy.")
        sweep = Sweep(
            cutoff=cutoff,
            now=now,
            action=policy.action,
            condition=dict(policy.condition or {}),
            batch_size=policy.batch_size,
            held=tuple(selectors.held_subjects()),
        )
        progress = _RunProgress(item=item, clock=clock, holder=holder)
        if selectors.policy_is_held(policy):
            found = target.count(sweep)
            tally = Tally(examined=found.examined, held=found.examined)
        elif run.dry_run:
            found = target.count(sweep)
            tally = Tally(found.examined, found.held, removed=found.examined - found.held)
        else:
            tally = target.purge(sweep, progress)
            # Whatever removals (this run's, withdrawals', erasures') left on storage long
            # enough ago goes now: a lake table's old files.
            item.files_removed = target.settle(now=clock.now())
        item.examined, item.held, item.removed = tally.examined, tally.held, tally.removed
        item.chunks = progress.chunks
        item.status = "complete"
    except LeaseLost:
        raise
    except Exception as exc:
        # One policy's failure is recorded and the others still run; the error is not lost.
        logger.exception("retention policy %s failed", policy.name)
        item.status = "failed"
        item.error = f"{type(exc).__name__}: {exc}"[:2000]
    item.duration_ms = int((time.monotonic() - t0) * 1000)
    item.save()
    if not run.dry_run:
        # A failed policy still removed the chunks it committed before failing.
        removed = item.removed if item.status == "complete" else _committed_removed(item)
        PURGE_ROWS.labels(policy.target, policy.action).inc(removed)
    return item


def _committed_removed(item: PurgeRunItem) -> int:
    """The rows a failed item's committed chunks removed, as its progress recorded them."""
    return PurgeRunItem.objects.filter(pk=item.pk).values_list("removed", flat=True).first() or 0


@dataclass(frozen=True)
class EnforceResult:
    run: PurgeRun
    # The time budget ran out before every policy had its turn: the next run continues.
    more_to_do: bool = False


def retention_enforce(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    trigger: str = "beat",
    policy_ids: list[int] | None = None,
    run_id: uuid.UUID | None = None,
    budget_seconds: float | None = None,
) -> EnforceResult:
    """One enforcement run over every enabled policy (or those named).

    Real runs take the lease first; if another run holds it this one is recorded as skipped.
    A run that was cut short (time budget) is complete for the policies it finished and
    answers `more_to_do`; the next run continues the rest, since every chunk is found again
    by its predicate.
    """
    clock = _Clock(start=now or timezone.now())
    run = None
    if run_id is not None:
        run = PurgeRun.objects.filter(pk=run_id, status=PurgeRun.Status.QUEUED).first()
    if run is None:
        run = PurgeRun.objects.create(dry_run=dry_run, trigger=trigger, started_at=clock.now())
    else:
        run.status = PurgeRun.Status.RUNNING
        run.started_at = clock.now()
        run.save(update_fields=["status", "started_at"])
    holder = None
    if not run.dry_run:
        holder = str(run.pk)
        if not lease_acquire(name=ENFORCE_LEASE, holder=holder, now=clock.now(), ttl=lease_ttl()):
            run.status = PurgeRun.Status.SKIPPED
            run.finished_at = clock.now()
            run.save(update_fields=["status", "finished_at"])
            PURGE_RUNS.labels(run.status).inc()
            return EnforceResult(run)
        # Whoever held the lease before us is gone: its run will never finish by itself.
        PurgeRun.objects.filter(status=PurgeRun.Status.RUNNING, dry_run=False).exclude(
            pk=run.pk
        ).update(status=PurgeRun.Status.ABANDONED, finished_at=clock.now())
    policies = RetentionPolicy.objects.filter(enabled=True).order_by("pk")
    if policy_ids is not None:
        policies = policies.filter(pk__in=policy_ids)
    errors = []
    more_to_do = False
    try:
        for policy in policies:
            if budget_seconds is not None and clock.elapsed() > budget_seconds:
                more_to_do = True
                errors.append("time budget spent; the next run continues")
                break
            item = _policy_enforce(policy=policy, run=run, clock=clock, holder=holder)
            run.examined += item.examined
            run.removed += item.removed
            run.held += item.held
            run.files_removed += item.files_removed
            if item.error:
                errors.append(f"{item.policy_name}: {item.error}")
    except LeaseLost:
        errors.append("lease lost to another run; stopped")
    finally:
        if holder is not None:
            lease_release(name=ENFORCE_LEASE, holder=holder)
    run.status = PurgeRun.Status.FAILED if errors else PurgeRun.Status.COMPLETE
    run.error = "\n".join(errors)[:5000]
    run.finished_at = clock.now()
    with transaction.atomic():
        run.save()
        if not run.dry_run:
            outbox_enqueue(
                event_type="retention.run_completed",
                payload={
                    "run_id": str(run.pk),
                    "status": run.status,
                    "examined": run.examined,
                    "removed": run.removed,
                    "held": run.held,
                },
            )
        audit_record(
            actor=SYSTEM,
            action="retention.dry_run" if run.dry_run else "retention.run",
            target_type="purge_run",
            target_id=str(run.pk),
            detail={
                "removed": run.removed,
                "files_removed": run.files_removed,
                "held": run.held,
                "status": run.status,
            },
        )
    PURGE_RUNS.labels(run.status).inc()
    return EnforceResult(run, more_to_do=more_to_do)


def run_queue(*, dry_run: bool, trigger: str, actor: Actor) -> PurgeRun:
    """Records a run to be carried out by the task (queued on commit)."""
    with transaction.atomic():
        run = PurgeRun.objects.create(
            dry_run=dry_run,
            trigger=trigger,
            status=PurgeRun.Status.QUEUED,
            started_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            action="retention.run_queue",
            target_type="purge_run",
            target_id=str(run.pk),
            detail={"dry_run": dry_run},
        )
        task_queue_on_commit(ENFORCE_TASK, run_id=str(run.pk))
    return run
