"""Every write of retention: policies, holds, enforcement runs, propagation, rights requests.

Deletion follows the restartable pattern: pick a chunk by a predicate, remove it in its own
short transaction, record progress, go on; a row already gone is done. A worker killed
midway loses the chunk it was in (rolled back) and the next run finds the rest.
"""

from __future__ import annotations

import calendar
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldError, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_duration

from consent import identity
from consent.ledger.purge import subject_history_purge
from consent.lineage import decisions_forget_subject
from consent.models import (
    Action,
    ConsentEvent,
    ConsentState,
    Purpose,
    Source,
    Subject,
    SubjectTombstone,
)
from consent.services import subject_mark_erased
from governance import crypto
from governance.actors import Actor
from governance.audit import audit_record
from governance.errors import InvalidRequest, NotFound
from governance.outbox import outbox_enqueue
from retention import engine, selectors
from retention.errors import (
    DuplicatePolicy,
    InvalidCondition,
    InvalidDuration,
    InvalidPolicy,
    LeaseLost,
    RetentionBelowMinimum,
    UnknownTarget,
)
from retention.models import (
    AccessRequest,
    ErasureRequest,
    Lease,
    LegalHold,
    PolicyAction,
    PurgeRun,
    PurgeRunItem,
    RequestStatus,
    RetentionPolicy,
    Watermark,
)
from retention.registry import (
    ErasureMode,
    Kind,
    SubjectRef,
    Target,
    minimum_keep,
    purged_with_it,
    target_get,
    targets,
)

logger = logging.getLogger(__name__)

ENFORCE_LEASE = "retention.enforce"
WITHDRAWALS_WATERMARK = "withdrawals"
SYSTEM = Actor.system("retention")


# --- policies ---------------------------------------------------------------------------


def duration_parse(value: Any) -> timedelta:
    """A positive duration from a timedelta, ISO 8601 ("P30D") or Django's "30 00:00:00"."""
    if isinstance(value, timedelta):
        parsed: timedelta | None = value
    elif isinstance(value, str) and len(value) <= 64:
        parsed = parse_duration(value.strip())
    else:
        parsed = None
    if parsed is None:
        raise InvalidDuration(detail={"field": "keep_for", "value": str(value)[:64]})
    if parsed <= timedelta(0):
        raise InvalidDuration(
            "keep_for must be longer than zero.", detail={"field": "keep_for", "value": value}
        )
    if parsed > timedelta(days=365 * 100):
        raise InvalidDuration(
            "keep_for must be at most 100 years.", detail={"field": "keep_for", "value": value}
        )
    return parsed


def _condition_validate(target: Target, condition: Any) -> dict[str, Any]:
    if condition in (None, {}):
        return {}
    if not isinstance(condition, dict):
        raise InvalidCondition("condition must be a JSON object.", detail={"field": "condition"})
    if target.external or target.kind == Kind.SUBJECT_HISTORY:
        raise InvalidCondition(
            "This target takes no condition.", detail={"field": "condition", "target": target.name}
        )
    model = target.model
    for name in condition:
        if not isinstance(name, str) or not name:
            raise InvalidCondition(detail={"field": "condition"})
        base = name.split("__")[0]
        try:
            model._meta.get_field(base)
        except Exception as exc:
            raise InvalidCondition(
                f"{target.name} has no field {base!r}.",
                detail={"field": "condition", "missing": base},
            ) from exc
    try:
        qs = model._default_manager.filter(**condition)
        str(qs.query)
    except (FieldError, ValidationError, ValueError, TypeError) as exc:
        raise InvalidCondition(str(exc)[:300], detail={"field": "condition"}) from exc
    if len(qs.query.alias_map) > 1:
        raise InvalidCondition(
            "A condition may only name the target's own fields, not related ones.",
            detail={"field": "condition"},
        )
    return dict(condition)


@dataclass(frozen=True)
class PolicyInput:
    name: str
    target: str
    keep_for: Any
    action: str = PolicyAction.DELETE
    condition: dict[str, Any] | None = None
    batch_size: int = 10_000
    enabled: bool = True
    purpose: str | None = None


@dataclass(frozen=True)
class CleanPolicy:
    name: str
    target: str
    keep_for: timedelta
    action: str
    condition: dict[str, Any]
    batch_size: int
    enabled: bool
    purpose: Purpose | None


def policy_validate(data: PolicyInput) -> CleanPolicy:
    """Checks a policy against the registry; raises a 4xx DomainError, saves nothing."""
    if not data.name or len(data.name) > 120:
        raise InvalidPolicy("name must be 1 to 120 characters.", detail={"field": "name"})
    target = target_get(data.target)
    if target is None:
        raise UnknownTarget(detail={"target": data.target, "known": sorted(targets())})
    if target.purged_with is not None:
        parent = target.purged_with[0]
        raise InvalidPolicy(
            f"{target.name} has no policy of its own: its rows go with their row in {parent}, "
            f"by {parent}'s policy.",
            detail={"field": "target", "target": target.name, "purged_with": parent},
        )
    keep_for = duration_parse(data.keep_for)
    minimum = minimum_keep(target)
    if keep_for < minimum:
        raise RetentionBelowMinimum(
            detail={
                "field": "keep_for",
                "target": target.name,
                "minimum_days": minimum.days,
                "keep_for_days": keep_for.total_seconds() / 86400,
            }
        )
    if data.action not in PolicyAction.values:
        raise InvalidPolicy(
            "action must be delete or anonymize.", detail={"field": "action", "known": ["delete"]}
        )
    if data.action == PolicyAction.ANONYMIZE and not target.anonymize:
        raise InvalidPolicy(
            f"{target.name} cannot be anonymised, only deleted.", detail={"field": "action"}
        )
    if not isinstance(data.batch_size, int) or not 1 <= data.batch_size <= 1_000_000:
        raise InvalidPolicy("batch_size must be from 1 to 1000000.", detail={"field": "batch_size"})
    condition = _condition_validate(target, data.condition)
    purpose = None
    if data.purpose:
        purpose = Purpose.objects.filter(key=data.purpose).first()
        if purpose is None:
            raise InvalidPolicy("Unknown purpose.", detail={"field": "purpose"})
        # Accountability records never go with a withdrawal: that would undercut the minimum.
        if (
            not target.holds_personal_data
            or target.accountability
            or target.erasure in (ErasureMode.LEDGER, ErasureMode.LINEAGE)
        ):
            raise InvalidPolicy(
                "Only a target holding subjects' data rows can be tied to a purpose.",
                detail={"field": "purpose", "target": target.name},
            )
    return CleanPolicy(
        name=data.name,
        target=target.name,
        keep_for=keep_for,
        action=data.action,
        condition=condition,
        batch_size=data.batch_size,
        enabled=data.enabled,
        purpose=purpose,
    )


def policy_create(*, data: PolicyInput, actor: Actor) -> RetentionPolicy:
    clean = policy_validate(data)
    try:
        with transaction.atomic():
            policy = RetentionPolicy.objects.create(**clean.__dict__)
            audit_record(
                actor=actor,
                action="retention.policy_create",
                target_type="retention_policy",
                target_id=str(policy.pk),
                detail={"name": policy.name, "target": policy.target},
            )
    except IntegrityError as exc:
        raise DuplicatePolicy(detail={"name": data.name}) from exc
    return policy


def policy_input(policy: RetentionPolicy) -> PolicyInput:
    """A saved policy as the input that would save it again (a base for partial updates)."""
    return PolicyInput(
        name=policy.name,
        target=policy.target,
        keep_for=policy.keep_for,
        action=policy.action,
        condition=dict(policy.condition or {}),
        batch_size=policy.batch_size,
        enabled=policy.enabled,
        purpose=policy.purpose.key if policy.purpose is not None else None,
    )


def policy_update(*, policy: RetentionPolicy, data: PolicyInput, actor: Actor) -> RetentionPolicy:
    """Replaces a policy's settings (validated like a new one) and audits old and new."""
    clean = policy_validate(data)
    try:
        with transaction.atomic():
            locked = RetentionPolicy.objects.select_for_update().get(pk=policy.pk)
            before = _policy_summary(locked)
            for name, value in clean.__dict__.items():
                setattr(locked, name, value)
            locked.save()
            audit_record(
                actor=actor,
                action="retention.policy_update",
                target_type="retention_policy",
                target_id=str(locked.pk),
                detail={"before": before, "after": _policy_summary(locked)},
            )
    except IntegrityError as exc:
        raise DuplicatePolicy(detail={"name": data.name}) from exc
    return locked


def _policy_summary(policy: RetentionPolicy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "target": policy.target,
        "keep_for_days": policy.keep_for.total_seconds() / 86400,
        "action": policy.action,
        "condition": policy.condition,
        "enabled": policy.enabled,
    }


def policies_seed_defaults() -> list[RetentionPolicy]:
    """One default policy per registered target that has none (run by a data migration and
    safe to run again)."""
    made = []
    with transaction.atomic():
        for target in targets().values():
            if target.purged_with is not None:
                continue  # goes with its parent, by the parent's policy
            if RetentionPolicy.objects.filter(target=target.name).exists():
                continue
            made.append(
                RetentionPolicy.objects.create(
                    name=f"default: {target.name}",
                    target=target.name,
                    keep_for=max(target.default_keep, minimum_keep(target)),
                    action=target.default_action,
                    condition=target.default_condition,
                    batch_size=1000 if target.kind == Kind.SUBJECT_HISTORY else 10_000,
                    purpose=Purpose.objects.filter(key=target.purpose).first()
                    if target.purpose
                    else None,
                )
            )
    return made


# --- legal holds ------------------------------------------------------------------------


@transaction.atomic
def hold_place(
    *,
    reason: str,
    actor: Actor,
    subject_id: str | None = None,
    namespace: str = Subject.Namespace.ACCOUNT,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
) -> LegalHold:
    """A hold on a subject (named by identifier, stored by keyed hash) or on a policy."""
    if (subject_id is None) == (policy is None):
        raise InvalidRequest("A legal hold names either a subject or a policy.")
    if not reason.strip():
        raise InvalidRequest("A legal hold needs a reason.", detail={"field": "reason"})
    key = ""
    if subject_id is not None:
        identity.validate_identifier(subject_id)
        key = identity.subject_key(subject_id)
    hold = LegalHold.objects.create(
        subject_key=key,
        namespace=namespace,
        policy=policy,
        reason=reason[:500],
        created_by=actor.label[:200],
        created_at=now or timezone.now(),
    )
    audit_record(
        actor=actor,
        action="retention.hold_place",
        target_type="legal_hold",
        target_id=str(hold.pk),
        detail={"subject_key": key, "policy": policy.pk if policy else None},
    )
    return hold


@transaction.atomic
def hold_release(*, hold: LegalHold, actor: Actor, now: datetime | None = None) -> LegalHold:
    hold.released_at = now or timezone.now()
    hold.save(update_fields=["released_at"])
    audit_record(
        actor=actor,
        action="retention.hold_release",
        target_type="legal_hold",
        target_id=str(hold.pk),
    )
    return hold


# --- the lease --------------------------------------------------------------------------


def lease_acquire(*, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Takes the lease if it is free or expired: one conditional UPDATE, atomic on any
    database, so two enforcers can never both win."""
    Lease.objects.bulk_create([Lease(name=name)], ignore_conflicts=True)
    taken = (
        Lease.objects.filter(name=name)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lte=now) | Q(holder=holder))
        .update(holder=holder, expires_at=now + ttl)
    )
    return taken == 1


def lease_renew(*, name: str, holder: str, now: datetime, ttl: timedelta) -> None:
    if not Lease.objects.filter(name=name, holder=holder).update(expires_at=now + ttl):
        raise LeaseLost(name)


def lease_release(*, name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=None)


# --- enforcement ------------------------------------------------------------------------


@dataclass
class _Clock:
    """The run's notion of now: the instant it was given, advanced by wall time since."""

    start: datetime
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def _lease_ttl() -> timedelta:
    return timedelta(seconds=settings.RETENTION_LEASE_SECONDS)


def _ledger_candidates(*, cutoff: datetime, now: datetime) -> QuerySet[Subject]:
    """Subjects whose every consent is withdrawn, refused or expired, last event before cutoff."""
    live = ConsentState.objects.filter(subject=OuterRef("pk"), status=Action.GRANTED).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    recent = ConsentEvent.objects.filter(subject=OuterRef("pk"), recorded_at__gte=cutoff)
    any_event = ConsentEvent.objects.filter(subject=OuterRef("pk"))
    return (
        Subject.objects.filter(Exists(any_event))
        .exclude(Exists(live))
        .exclude(Exists(recent))
        .order_by("pk")
    )


@dataclass
class _Progress:
    item: PurgeRunItem
    clock: _Clock
    holder: str | None
    removed: int = 0
    chunks: int = 0

    def renew(self, _count: int = 0) -> None:
        """Keeps the lease through work that is not the policy's own rows (its children)."""
        if self.holder is not None:
            lease_renew(
                name=ENFORCE_LEASE, holder=self.holder, now=self.clock.now(), ttl=_lease_ttl()
            )

    def chunk(self, count: int) -> None:
        self.removed += count
        self.chunks += 1
        if self.holder is not None:
            lease_renew(
                name=ENFORCE_LEASE, holder=self.holder, now=self.clock.now(), ttl=_lease_ttl()
            )
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
        policy_held = selectors.policy_is_held(policy)
        held_refs = selectors.held_subjects()
        progress = _Progress(item=item, clock=clock, holder=holder)
        if target.kind == Kind.SUBJECT_HISTORY:
            candidates = _ledger_candidates(cutoff=cutoff, now=now)
            held_keys = [r.key for r in held_refs]
            examined = candidates.count()
            held = examined if policy_held else candidates.filter(key__in=held_keys).count()
            item.examined, item.held = examined, held
            if run.dry_run:
                item.removed = examined - held
            elif not policy_held:
                _ledger_purge(
                    candidates.exclude(key__in=held_keys),
                    cutoff=cutoff,
                    now=now,
                    batch_size=policy.batch_size,
                    progress=progress,
                )
                item.removed = progress.removed
        elif target.external:
            held_keys = [r.key for r in held_refs]
            examined, held = engine.external_count(target, cutoff=cutoff, held_keys=held_keys)
            if policy_held:
                held = examined
            item.examined, item.held = examined, held
            if run.dry_run:
                item.removed = examined - held
            elif not policy_held:
                item.removed = engine.external_purge(
                    target,
                    cutoff=cutoff,
                    held_keys=held_keys,
                    batch_size=policy.batch_size,
                    on_chunk=progress.chunk,
                )
        else:
            qs = engine.eligible(
                target, cutoff=cutoff, condition=policy.condition, action=policy.action
            )
            hq = engine.held_q(target, held_refs)
            free = engine.not_held_q(target, held_refs)
            children = purged_with_it(target)
            for child in children:
                # A row whose child row a hold keeps is kept too (deleting it would cascade).
                child_held = engine.held_q(child, held_refs)
                if child_held is not None:
                    assert child.purged_with is not None
                    parents = child.model._default_manager.filter(child_held).values(
                        child.purged_with[1]
                    )
                    hq = Q(pk__in=parents) if hq is None else hq | Q(pk__in=parents)
                    free = ~Q(pk__in=parents) if free is None else free & ~Q(pk__in=parents)
            if run.dry_run or policy_held:
                examined = qs.count()
                held = examined if policy_held else (qs.filter(hq).count() if hq else 0)
                item.examined, item.held = examined, held
                item.removed = examined - held if run.dry_run else 0
            else:
                # A real run does not count first (that would read the rows twice):
                # what it examined is what it removed plus what it held back.
                item.held = qs.filter(hq).count() if hq else 0
                going = qs.filter(free) if free is not None else qs
                if policy.action == PolicyAction.DELETE:
                    for child in children:
                        # Children first, in chunks of their own: left to the cascade, one
                        # chunk of parents could drag millions of lineage rows into one
                        # transaction. Counted apart from the policy's own rows.
                        assert child.purged_with is not None
                        engine.purge_rows(
                            child.model._default_manager.filter(
                                **{f"{child.purged_with[1]}__in": going.values("pk")}
                            ),
                            action=PolicyAction.DELETE,
                            values={},
                            batch_size=policy.batch_size,
                            on_chunk=progress.renew,
                        )
                item.removed = engine.purge_rows(
                    going,
                    action=policy.action,
                    values=target.anonymize,
                    batch_size=policy.batch_size,
                    on_chunk=progress.chunk,
                    guard=target.delete_guard,
                    definer=engine.deleter_for(target, using=going.db)
                    if policy.action == PolicyAction.DELETE
                    else None,
                    cutoff=cutoff,
                )
                item.examined = item.removed + item.held
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
    return item


def _ledger_purge(
    candidates: QuerySet[Subject],
    *,
    cutoff: datetime,
    now: datetime,
    batch_size: int,
    progress: _Progress,
) -> None:
    last_pk = 0
    while True:
        pks = list(candidates.filter(pk__gt=last_pk).values_list("pk", flat=True)[:batch_size])
        if not pks:
            return
        removed = 0
        for pk in pks:
            with transaction.atomic():
                subject = Subject.objects.select_for_update().get(pk=pk)
                # Checked again under the subject's lock: a grant may have arrived meanwhile.
                if not _ledger_candidates(cutoff=cutoff, now=now).filter(pk=pk).exists():
                    continue
                tombstone = subject_history_purge(
                    subject=subject, reason=SubjectTombstone.Reason.EXPIRED_HISTORY
                )
                removed += int(tombstone.removed.get("consent_events", 0))
        last_pk = pks[-1]
        progress.chunk(removed)


def retention_enforce(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    trigger: str = "beat",
    policy_ids: list[int] | None = None,
    run_id: uuid.UUID | None = None,
    budget_seconds: float | None = None,
) -> PurgeRun:
    """One enforcement run over every enabled policy (or those named).

    Real runs take the lease first; if another run holds it this one is recorded as skipped.
    A run that was cut short (time budget) is complete for the policies it finished; the
    next run continues the rest, since every chunk is found again by its predicate.
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
        if not lease_acquire(name=ENFORCE_LEASE, holder=holder, now=clock.now(), ttl=_lease_ttl()):
            run.status = PurgeRun.Status.SKIPPED
            run.finished_at = clock.now()
            run.save(update_fields=["status", "finished_at"])
            return run
        # Whoever held the lease before us is gone: its run will never finish by itself.
        PurgeRun.objects.filter(status=PurgeRun.Status.RUNNING, dry_run=False).exclude(
            pk=run.pk
        ).update(status=PurgeRun.Status.ABANDONED, finished_at=clock.now())
    policies = RetentionPolicy.objects.filter(enabled=True).order_by("pk")
    if policy_ids is not None:
        policies = policies.filter(pk__in=policy_ids)
    errors = []
    try:
        for policy in policies:
            if budget_seconds is not None and clock.elapsed() > budget_seconds:
                errors.append("time budget spent; the next run continues")
                break
            item = _policy_enforce(policy=policy, run=run, clock=clock, holder=holder)
            run.examined += item.examined
            run.removed += item.removed
            run.held += item.held
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
            detail={"removed": run.removed, "held": run.held, "status": run.status},
        )
    return run


def run_queue(*, dry_run: bool, trigger: str, actor: Actor) -> PurgeRun:
    """Records a run to be carried out by the task (queued on commit)."""
    from retention.tasks import retention_enforce_task

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
        retention_enforce_task.delay_on_commit(run_id=str(run.pk))
    return run


# --- removing one subject's rows (erasure, withdrawal propagation) ----------------------


def subject_rows_remove(
    *,
    target: Target,
    ref: SubjectRef,
    action: str,
    batch_size: int = 1000,
    keep: dict[str, Any] | None = None,
) -> int:
    if target.external:
        return engine.external_subject_delete(target, subject_key=ref.key)
    assert target.subject_q is not None
    qs = target.model._default_manager.filter(target.subject_q(ref))
    if action == PolicyAction.DELETE and keep == target.erasure_keep:
        # A guarded table's own way past its trigger (PostgreSQL), which keeps the same rows.
        removed = engine.subject_delete(target, qs, subject_key=ref.key)
        if removed is not None:
            return removed
    if keep:
        qs = qs.exclude(**keep)
    if target.never_purge:
        qs = qs.exclude(**target.never_purge)
    if action == PolicyAction.ANONYMIZE:
        qs = qs.exclude(engine.anonymized_q(target.anonymize))
    return engine.purge_rows(
        qs,
        action=action,
        values=target.anonymize,
        batch_size=batch_size,
        guard=target.delete_guard,
    )


def withdrawals_propagate(*, now: datetime | None = None, batch: int = 500) -> int:
    """Reads `withdrawn` events from the ledger since the watermark and removes the subject's
    rows in every target tied to that purpose (held ones excepted). Returns events handled.

    Refusals and GPC signals are never read here: they stop processing, they delete nothing.
    Events younger than the lag are left for the next pass, so a transaction that commits
    late with an earlier timestamp is not skipped by the watermark.
    """
    moment = now or timezone.now()
    horizon = moment - timedelta(seconds=settings.RETENTION_PROPAGATION_LAG_SECONDS)
    Watermark.objects.bulk_create([Watermark(name=WITHDRAWALS_WATERMARK)], ignore_conflicts=True)
    mark = Watermark.objects.get(name=WITHDRAWALS_WATERMARK)
    events = ConsentEvent.objects.filter(action=Action.WITHDRAWN, recorded_at__lte=horizon).exclude(
        source=Source.GPC
    )
    if mark.position is not None:
        events = events.filter(
            Q(recorded_at__gt=mark.position)
            | Q(recorded_at=mark.position, id__gt=uuid.UUID(mark.last_id))
        )
    rows = list(
        events.order_by("recorded_at", "id").values(
            "id", "recorded_at", "purpose__key", "subject_id", "subject__key", "subject__namespace"
        )[:batch]
    )
    tied: dict[str, list[RetentionPolicy]] = {}
    for policy in RetentionPolicy.objects.filter(enabled=True).select_related("purpose"):
        key = selectors.policy_purpose_key(policy)
        if key:
            tied.setdefault(key, []).append(policy)
    held_keys = {r.key for r in selectors.held_subjects()}
    for row in rows:
        ref = SubjectRef(
            key=row["subject__key"], namespace=row["subject__namespace"], pk=row["subject_id"]
        )
        report: dict[str, Any] = {}
        for policy in tied.get(row["purpose__key"], []):
            target = target_get(policy.target)
            if target is None:
                continue
            if ref.key in held_keys or selectors.policy_is_held(policy):
                report[target.name] = "held"
                continue
            report[target.name] = subject_rows_remove(target=target, ref=ref, action=policy.action)
        with transaction.atomic():
            Watermark.objects.filter(pk=mark.pk).update(
                position=row["recorded_at"], last_id=str(row["id"])
            )
            if report:
                audit_record(
                    actor=SYSTEM,
                    action="retention.withdrawal_propagate",
                    target_type="consent_event",
                    target_id=str(row["id"]),
                    detail={"subject_key": ref.key, "removed": report},
                )
    return len(rows)


# --- rights requests --------------------------------------------------------------------


def add_month(moment: datetime) -> datetime:
    """The same day next month (the last day when that month is shorter), GDPR Art. 12(3)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def erasure_request_create(
    *,
    subject_id: str,
    actor: Actor,
    namespace: str = Subject.Namespace.ACCOUNT,
    now: datetime | None = None,
) -> ErasureRequest:
    """Records the request and queues its task. The same answer whether or not the subject
    is known: erasure must not reveal whether a person was."""
    from retention.tasks import erasure_execute_task

    identity.validate_identifier(subject_id)
    moment = now or timezone.now()
    key = identity.subject_key(subject_id)
    with transaction.atomic():
        request = ErasureRequest.objects.create(
            subject_key=key,
            namespace=namespace,
            identifier_encrypted=identity.encrypt_identifier(subject_id, key=key),
            created_at=moment,
            due_at=add_month(moment),
        )
        audit_record(
            actor=actor,
            action="rights.erasure_request",
            target_type="erasure_request",
            target_id=str(request.pk),
            detail={"subject_key": key},
        )
        erasure_execute_task.delay_on_commit(request_id=str(request.pk))
    return request


def _claim(model: type[ErasureRequest] | type[AccessRequest], pk: Any, now: datetime) -> bool:
    """Takes a request that is pending, or running with a stale heartbeat (its worker died)."""
    stale = now - timedelta(seconds=settings.RETENTION_RIGHTS_STALE_SECONDS)
    return (
        model.objects.filter(pk=pk)
        .filter(
            Q(status=RequestStatus.PENDING)
            | Q(status=RequestStatus.RUNNING, heartbeat_at__lte=stale)
            | Q(status=RequestStatus.RUNNING, heartbeat_at__isnull=True)
        )
        .update(status=RequestStatus.RUNNING, heartbeat_at=now)
        == 1
    )


def _policies_by_target() -> dict[str, list[RetentionPolicy]]:
    found: dict[str, list[RetentionPolicy]] = {}
    for policy in RetentionPolicy.objects.all():
        found.setdefault(policy.target, []).append(policy)
    return found


def _target_held(target: Target, policies: dict[str, list[RetentionPolicy]]) -> bool:
    return any(selectors.policy_is_held(p) for p in policies.get(target.name, []))


def erasure_execute(*, request_id: uuid.UUID | str, now: datetime | None = None) -> ErasureRequest:
    """Carries out an erasure, step by step, each step recorded so a rerun resumes it:
    announce (lineage first), remove from every target, then purge the ledger history,
    destroy the identifier and leave the tombstone, in one transaction."""
    moment = now or timezone.now()
    request = ErasureRequest.objects.filter(pk=request_id).first()
    if request is None:
        raise NotFound()
    if not _claim(ErasureRequest, request.pk, moment):
        return request
    ErasureRequest.objects.filter(pk=request.pk).update(attempts=request.attempts + 1)
    request.refresh_from_db()
    subject = Subject.objects.filter(namespace=request.namespace, key=request.subject_key).first()
    ref = SubjectRef(
        key=request.subject_key, namespace=request.namespace, pk=subject.pk if subject else None
    )
    progress: dict[str, Any] = dict(request.progress or {})
    progress.setdefault("targets", {})
    all_targets = [t for t in targets().values() if t.holds_personal_data]

    def save(**extra: Any) -> None:
        ErasureRequest.objects.filter(pk=request.pk).update(
            progress=progress, heartbeat_at=timezone.now(), **extra
        )

    if LegalHold.objects.filter(subject_key=request.subject_key, released_at__isnull=True).exists():
        for target in all_targets:
            progress["targets"][target.name] = {"status": "held", "removed": 0}
        save(status=RequestStatus.HELD)
        request.refresh_from_db()
        return request

    identifier = identity.decrypt_identifier(request.identifier_encrypted, key=request.subject_key)
    if not progress.get("announced"):
        with transaction.atomic():
            decision_ids: list[uuid.UUID] = []
            if subject is not None:
                Subject.objects.select_for_update().get(pk=subject.pk)
                decision_ids = decisions_forget_subject(subject=subject)
            outbox_enqueue(
                event_type="subject.erased",
                payload={
                    "request_id": str(request.pk),
                    "decisions": [str(d) for d in decision_ids],
                    "requested_at": request.created_at.isoformat(),
                },
                subject_key=request.subject_key,
                subject_identifier=identifier,
            )
            progress["announced"] = True
            progress["targets"]["consent.DecisionLineage"] = {
                "status": "done",
                "removed": len(decision_ids),
            }
            save(decision_ids=[str(d) for d in decision_ids])

    policies = _policies_by_target()
    for target in all_targets:
        state = progress["targets"].get(target.name, {})
        if state.get("status") in ("done", "held"):
            continue
        if target.erasure in (ErasureMode.LEDGER, ErasureMode.LINEAGE, ErasureMode.NONE):
            continue
        if _target_held(target, policies):
            progress["targets"][target.name] = {"status": "held", "removed": 0}
        else:
            action = (
                PolicyAction.ANONYMIZE
                if target.erasure == ErasureMode.ANONYMIZE
                else PolicyAction.DELETE
            )
            removed = subject_rows_remove(
                target=target, ref=ref, action=action, keep=target.erasure_keep
            )
            progress["targets"][target.name] = {"status": "done", "removed": removed}
        save()

    ledger_held = _target_held(target_get("consent.ConsentEvent"), policies)  # type: ignore[arg-type]
    with transaction.atomic():
        locked = ErasureRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != RequestStatus.RUNNING:
            return locked
        elsewhere = {
            name: state.get("removed", 0)
            for name, state in progress["targets"].items()
            if state.get("status") == "done"
        }
        if subject is not None and ledger_held:
            for name in ("consent.ConsentEvent", "consent.ConsentContext"):
                progress["targets"][name] = {"status": "held", "removed": 0}
            subject_mark_erased(subject=subject, now=moment)
            tombstone = None
        elif subject is not None:
            tombstone = subject_history_purge(
                subject=subject, reason=SubjectTombstone.Reason.ERASURE, removed_elsewhere=elsewhere
            )
            subject_mark_erased(subject=subject, now=moment)
            progress["targets"]["consent.ConsentEvent"] = {
                "status": "done",
                "removed": tombstone.removed.get("consent_events", 0),
            }
            progress["targets"]["consent.ConsentContext"] = {
                "status": "done",
                "removed": tombstone.removed.get("consent_contexts", 0),
            }
        else:
            # Unknown subject: a tombstone all the same, so a later restore or replay, and
            # anyone reading the records, sees the same thing as for a known one.
            tombstone = SubjectTombstone.objects.create(
                subject_key=request.subject_key,
                key_version=settings.SUBJECT_HASH_KEY_VERSION,
                namespace=request.namespace,
                reason=SubjectTombstone.Reason.ERASURE,
                removed={"consent_events": 0, "consent_states": 0, "consent_contexts": 0},
                created_at=moment,
            )
            # A hold on the ledger's policy is reported as for a known subject: the
            # progress must not tell the two apart.
            for name in ("consent.ConsentEvent", "consent.ConsentContext"):
                outcome = "held" if ledger_held else "done"
                progress["targets"][name] = {"status": outcome, "removed": 0}
        locked.progress = progress
        locked.status = RequestStatus.COMPLETE
        locked.completed_at = moment
        locked.heartbeat_at = moment
        locked.identifier_encrypted = None
        locked.tombstone_id = tombstone.pk if tombstone else None
        locked.save()
        audit_record(
            actor=SYSTEM,
            action="rights.erasure_complete",
            target_type="erasure_request",
            target_id=str(locked.pk),
            detail={"subject_key": locked.subject_key, "removed": elsewhere},
        )
    return locked


def access_request_create(
    *,
    subject_id: str,
    actor: Actor,
    namespace: str = Subject.Namespace.ACCOUNT,
    now: datetime | None = None,
) -> AccessRequest:
    from retention.tasks import access_execute_task

    identity.validate_identifier(subject_id)
    moment = now or timezone.now()
    key = identity.subject_key(subject_id)
    with transaction.atomic():
        request = AccessRequest.objects.create(
            subject_key=key, namespace=namespace, created_at=moment, due_at=add_month(moment)
        )
        audit_record(
            actor=actor,
            action="rights.access_request",
            target_type="access_request",
            target_id=str(request.pk),
            detail={"subject_key": key},
        )
        access_execute_task.delay_on_commit(request_id=str(request.pk))
    return request


def access_execute(*, request_id: uuid.UUID | str, now: datetime | None = None) -> AccessRequest:
    """Builds the export and stores it encrypted; running it twice builds it again."""
    moment = now or timezone.now()
    request = AccessRequest.objects.filter(pk=request_id).first()
    if request is None:
        raise NotFound()
    if not _claim(AccessRequest, request.pk, moment):
        return request
    export = selectors.subject_export(
        ref=SubjectRef(key=request.subject_key, namespace=request.namespace)
    )
    blob = json.dumps(export, cls=DjangoJSONEncoder, default=str).encode()
    with transaction.atomic():
        AccessRequest.objects.filter(pk=request.pk).update(
            export_encrypted=crypto.encrypt(blob, aad=str(request.pk).encode()),
            status=RequestStatus.COMPLETE,
            completed_at=moment,
            heartbeat_at=moment,
            attempts=request.attempts + 1,
        )
        audit_record(
            actor=SYSTEM,
            action="rights.access_complete",
            target_type="access_request",
            target_id=str(request.pk),
            detail={"subject_key": request.subject_key},
        )
    request.refresh_from_db()
    return request


def rights_requests_sweep(*, now: datetime | None = None) -> dict[str, list[str]]:
    """Re-queues requests whose worker died (pending or running with a stale heartbeat),
    working from database state, since the broker may take an hour to redeliver."""
    from retention.tasks import access_execute_task, erasure_execute_task

    moment = now or timezone.now()
    stale = moment - timedelta(seconds=settings.RETENTION_RIGHTS_STALE_SECONDS)
    stuck = Q(status=RequestStatus.PENDING, created_at__lte=stale) | Q(
        status=RequestStatus.RUNNING
    ) & (Q(heartbeat_at__lte=stale) | Q(heartbeat_at__isnull=True))
    requeued: dict[str, list[str]] = {"erasure": [], "access": []}
    for pk in ErasureRequest.objects.filter(stuck).values_list("pk", flat=True):
        erasure_execute_task.delay_on_commit(request_id=str(pk))
        requeued["erasure"].append(str(pk))
    for pk in AccessRequest.objects.filter(stuck).values_list("pk", flat=True):
        access_execute_task.delay_on_commit(request_id=str(pk))
        requeued["access"].append(str(pk))
    return requeued


def rights_request_requeue(
    *, request: ErasureRequest | AccessRequest, actor: Actor
) -> ErasureRequest | AccessRequest:
    """Queues a held (hold since released) or failed request again; done steps are kept."""
    from retention.tasks import access_execute_task, erasure_execute_task

    with transaction.atomic():
        type(request).objects.filter(
            pk=request.pk, status__in=[RequestStatus.HELD, RequestStatus.FAILED]
        ).update(status=RequestStatus.PENDING, heartbeat_at=None)
        if isinstance(request, ErasureRequest):
            # Targets reported held are tried again; the rest stay done.
            progress = dict(request.progress or {})
            progress["targets"] = {
                name: state
                for name, state in progress.get("targets", {}).items()
                if state.get("status") != "held"
            }
            ErasureRequest.objects.filter(pk=request.pk).update(progress=progress)
            erasure_execute_task.delay_on_commit(request_id=str(request.pk))
        else:
            access_execute_task.delay_on_commit(request_id=str(request.pk))
        audit_record(
            actor=actor,
            action="rights.requeue",
            target_type=type(request).__name__,
            target_id=str(request.pk),
            detail={"subject_key": request.subject_key},
        )
    request.refresh_from_db()
    return request


def erasures_replay(*, now: datetime | None = None) -> list[str]:
    """Applies every erasure tombstone again (after restoring a backup): a subject found
    again with an identifier or a history older than its tombstone is erased once more."""
    moment = now or timezone.now()
    replayed = []
    for tomb in SubjectTombstone.objects.filter(reason=SubjectTombstone.Reason.ERASURE).order_by(
        "created_at"
    ):
        subject = Subject.objects.filter(namespace=tomb.namespace, key=tomb.subject_key).first()
        if subject is None:
            continue
        resurrected = (
            subject.erased_at is None
            or ConsentEvent.objects.filter(
                subject=subject, recorded_at__lte=tomb.created_at
            ).exists()
        )
        if not resurrected:
            continue
        with transaction.atomic():
            request = ErasureRequest.objects.create(
                subject_key=tomb.subject_key,
                namespace=tomb.namespace,
                identifier_encrypted=subject.identifier_encrypted,
                created_at=moment,
                due_at=moment,
                progress={"replay_of": tomb.pk},
            )
        erasure_execute(request_id=request.pk, now=moment)
        replayed.append(tomb.subject_key)
    return replayed
