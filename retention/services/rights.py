"""Rights requests: erasure (Art. 17) and access (Art. 15), carried out by tasks step by
step so a rerun resumes; the sweeper re-queues those whose worker died, and the replay
erases again what a backup restore brought back."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent import identity
from consent.decisions.services import decisions_forget_subject
from consent.ledger.purge import subject_history_purge
from consent.models import (
    ConsentEvent,
    Subject,
    SubjectKeyChange,
    SubjectTombstone,
)
from consent.restriction.services import restrictions_forget_subject
from consent.services import subject_mark_erased
from governance import crypto
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_record
from governance.errors import NotFound
from governance.outbox import outbox_enqueue
from governance.queue import task_queue_on_commit
from retention import selectors
from retention.models import (
    AccessRequest,
    ErasureRequest,
    LegalHold,
    PolicyAction,
    RequestStatus,
    RetentionPolicy,
)
from retention.registry import target_get, targets
from retention.services import SYSTEM
from retention.services.requests_notes import (
    NOTE_FIELDS,
    add_month,
    note_encrypt,
    notes_destroy,
)
from retention.targets.base import ErasureMode, SubjectRef, Target

ERASURE_TASK = "retention.erasure_execute"
ACCESS_TASK = "retention.access_execute"


def erasure_request_create(
    *,
    subject_id: str,
    actor: Actor,
    namespace: str = Subject.Namespace.ACCOUNT,
    verification_note: str = "",
    now: datetime | None = None,
) -> ErasureRequest:
    """Records the request and queues its task. The same answer whether or not the subject
    is known: erasure must not reveal whether a person was. `verification_note` (staff:
    how the requester's identity was verified) is kept encrypted."""
    identity.validate_identifier(subject_id)
    key = identity.subject_key(subject_id)
    return _request_open(
        ErasureRequest,
        kind="erasure",
        key=key,
        namespace=namespace,
        actor=actor,
        now=now,
        verification_note=verification_note,
        identifier_encrypted=identity.encrypt_identifier(subject_id, key=key),
    )


def access_request_create(
    *,
    subject_id: str,
    actor: Actor,
    namespace: str = Subject.Namespace.ACCOUNT,
    verification_note: str = "",
    now: datetime | None = None,
) -> AccessRequest:
    """Records the request and queues its task, which builds the export."""
    identity.validate_identifier(subject_id)
    return _request_open(
        AccessRequest,
        kind="access",
        key=identity.subject_key(subject_id),
        namespace=namespace,
        actor=actor,
        now=now,
        verification_note=verification_note,
    )


RequestT = TypeVar("RequestT", ErasureRequest, AccessRequest)
_TASKS = {"erasure": ERASURE_TASK, "access": ACCESS_TASK}


def _request_open(
    model: type[RequestT],
    *,
    kind: str,
    key: str,
    namespace: str,
    actor: Actor,
    now: datetime | None,
    verification_note: str,
    **fields: Any,
) -> RequestT:
    moment = now or timezone.now()
    with transaction.atomic():
        request = model(
            subject_key=key,
            namespace=namespace,
            created_at=moment,
            due_at=add_month(moment),
            **fields,
        )
        if verification_note.strip():
            request.verification_note_encrypted = note_encrypt(
                request, "verification_note_encrypted", verification_note
            )
        request.save(force_insert=True)
        audit_record(
            actor=actor,
            action=f"rights.{kind}_request",
            target_type=f"{kind}_request",
            target_id=str(request.pk),
            detail={"subject_key": key, "verification_note": bool(verification_note.strip())},
        )
        task_queue_on_commit(_TASKS[kind], request_id=str(request.pk))
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


def _target_settle(target: Target, state: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A target whose removal is recorded: done once what the removal left on storage is
    deleted (`settle`, after `settle_after`: at once for a database, after the vacuum delay
    for a lake table), else still settling."""
    removed_at = datetime.fromisoformat(state["removed_at"])
    if now < removed_at + target.settle_after:
        return state
    files = target.settle(now=now, erasure=True)
    return {"status": "done", "removed": state["removed"], "files_removed": files}


def erasure_execute(*, request_id: uuid.UUID | str, now: datetime | None = None) -> ErasureRequest:
    """Carries out an erasure, step by step, each step recorded so a rerun resumes it:
    announce (lineage first), remove from every target, then purge the ledger history,
    destroy the identifier and leave the tombstone, in one transaction. A target still
    settling (a lake table waiting for its vacuum delay) leaves the request pending, with
    the rest done; the sweeper queues it again until that target is done too."""
    moment = now or timezone.now()
    t0 = time.monotonic()

    def clock() -> datetime:
        # `now` advanced by the time spent: a removal is dated after it committed.
        return moment + timedelta(seconds=time.monotonic() - t0)

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
    # Rows still naming the person by a key from before a rectification (the audit trail,
    # which is never re-keyed; an external table whose re-key task has not run) go too.
    former = (
        SubjectKeyChange.objects.filter(subject_id=subject.pk).values_list("old_key", flat=True)
        if subject is not None
        else []
    )
    refs = [ref] + [
        SubjectRef(key=old_key, namespace=ref.namespace, pk=ref.pk)
        for old_key in sorted(set(former) - {ref.key})
    ]
    progress: dict[str, Any] = dict(request.progress or {})
    progress.setdefault("targets", {})
    all_targets = [t for t in targets().values() if t.holds_personal_data]

    def save(**extra: Any) -> None:
        ErasureRequest.objects.filter(pk=request.pk).update(
            progress=progress, heartbeat_at=timezone.now(), **extra
        )

    # Once the ledger step is done the person is erased: a hold placed since keeps nothing.
    if not progress.get("erased") and (
        LegalHold.objects.filter(subject_key=request.subject_key, released_at__isnull=True).exists()
    ):
        for target in all_targets:
            progress["targets"][target.name] = {"status": "held", "removed": 0}
        save(status=RequestStatus.HELD)
        request.refresh_from_db()
        return request

    identifier = identity.decrypt_identifier(request.identifier_encrypted, key=request.subject_key)
    ref = dataclasses.replace(ref, identifier=identifier)
    refs = [ref, *refs[1:]]
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
                    "requested_at": iso(request.created_at),
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
        if state.get("status") != "settling" and _target_held(target, policies):
            progress["targets"][target.name] = {"status": "held", "removed": 0}
            save()
            continue
        if state.get("status") != "settling":
            action = (
                PolicyAction.ANONYMIZE
                if target.erasure == ErasureMode.ANONYMIZE
                else PolicyAction.DELETE
            )
            removed = sum(target.subject_remove(r, action=action, erasure=True) for r in refs)
            state = {"status": "settling", "removed": removed, "removed_at": iso(clock())}
            progress["targets"][target.name] = state
            save()
        progress["targets"][target.name] = _target_settle(target, state, clock())
        save()
    settling = any(s.get("status") == "settling" for s in progress["targets"].values())

    ledger_held = _target_held(target_get("consent.ConsentEvent"), policies)  # type: ignore[arg-type]
    with transaction.atomic():
        locked = ErasureRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != RequestStatus.RUNNING:
            return locked
        ledger = {t.name for t in all_targets if t.erasure == ErasureMode.LEDGER}
        elsewhere = {
            name: state.get("removed", 0)
            for name, state in progress["targets"].items()
            if state.get("status") in ("done", "settling") and name not in ledger
        }
        # Restriction periods go with the person, reasons and all (a restriction never
        # holds back the person's own erasure); the same entry for an unknown subject.
        if not progress.get("erased"):
            progress["targets"]["consent.Restriction"] = {
                "status": "done",
                "removed": restrictions_forget_subject(subject=subject) if subject else 0,
            }
        if progress.get("erased"):
            tombstone = None  # done by an earlier pass, which kept the tombstone's id
        elif subject is not None and ledger_held:
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
        if not progress.get("erased"):
            progress["erased"] = True
            locked.identifier_encrypted = None
            locked.tombstone_id = tombstone.pk if tombstone else None
            for field in NOTE_FIELDS:
                setattr(locked, field, None)
            notes_destroy(key=locked.subject_key, namespace=locked.namespace)
        locked.progress = progress
        locked.heartbeat_at = moment
        if settling:
            # The sweeper queues it again; only the settling targets are left.
            locked.status = RequestStatus.PENDING
            locked.save()
            return locked
        locked.status = RequestStatus.COMPLETE
        locked.completed_at = moment
        locked.save()
        audit_record(
            actor=SYSTEM,
            action="rights.erasure_complete",
            target_type="erasure_request",
            target_id=str(locked.pk),
            detail={"subject_key": locked.subject_key, "removed": elsewhere},
        )
    return locked


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
    moment = now or timezone.now()
    stale = moment - timedelta(seconds=settings.RETENTION_RIGHTS_STALE_SECONDS)
    stuck = Q(status=RequestStatus.PENDING, created_at__lte=stale) | Q(
        status=RequestStatus.RUNNING
    ) & (Q(heartbeat_at__lte=stale) | Q(heartbeat_at__isnull=True))
    requeued: dict[str, list[str]] = {"erasure": [], "access": []}
    for pk in ErasureRequest.objects.filter(stuck).values_list("pk", flat=True):
        task_queue_on_commit(ERASURE_TASK, request_id=str(pk))
        requeued["erasure"].append(str(pk))
    for pk in AccessRequest.objects.filter(stuck).values_list("pk", flat=True):
        task_queue_on_commit(ACCESS_TASK, request_id=str(pk))
        requeued["access"].append(str(pk))
    return requeued


def rights_request_requeue(
    *, request: ErasureRequest | AccessRequest, actor: Actor
) -> ErasureRequest | AccessRequest:
    """Queues a held (hold since released) or failed request again; done steps are kept."""
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
            task_queue_on_commit(ERASURE_TASK, request_id=str(request.pk))
        else:
            task_queue_on_commit(ACCESS_TASK, request_id=str(request.pk))
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
    again with an identifier or a history older than its tombstone is erased once more,
    under its key or under a key it had before a rectification (a subject created under
    that key since the rectification is someone else)."""
    moment = now or timezone.now()
    replayed = []
    for tomb in SubjectTombstone.objects.filter(reason=SubjectTombstone.Reason.ERASURE).order_by(
        "created_at"
    ):
        for subject in _tombstone_subjects(tomb):
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
                    subject_key=subject.key,
                    namespace=tomb.namespace,
                    identifier_encrypted=subject.identifier_encrypted,
                    created_at=moment,
                    due_at=moment,
                    progress={"replay_of": tomb.pk},
                )
            erasure_execute(request_id=request.pk, now=moment)
            replayed.append(tomb.subject_key)
    return replayed


def _tombstone_subjects(tomb: SubjectTombstone) -> list[Subject]:
    """Where a restore may have brought back the person a tombstone erased: under its key,
    and under each key they had before a rectification, by a subject that existed before
    that key was left (one created under it since is someone new)."""
    found = list(Subject.objects.filter(namespace=tomb.namespace, key=tomb.subject_key))
    for former in tomb.former_keys or []:
        found += Subject.objects.filter(
            namespace=tomb.namespace,
            key=former["key"],
            created_at__lt=datetime.fromisoformat(former["until"]),
        )
    return found
