"""Reads of retention: holds, policies, runs, exports and what the Art. 30 record shows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from consent import identity
from consent.models import ConsentEvent, ConsentState, Purpose, Restriction, Subject
from consent.person.selectors import person_notes
from consent.restriction.selectors import restriction_periods
from governance import crypto
from retention.models import (
    AccessRequest,
    ErasureRequest,
    LegalHold,
    PurgeRun,
    RequestStatus,
    RetentionPolicy,
)
from retention.registry import targets
from retention.targets.base import ErasureMode, SubjectRef


def held_subjects() -> list[SubjectRef]:
    """Subjects whose rows no retention purge may remove, with their row ids where the
    service knows them: those under an active legal hold, and those whose processing is
    restricted (an open period, Art. 18(1)(c): the person may need the data for a legal
    claim). Erasure reads legal holds itself: a restriction never holds back the person's
    own erasure."""
    keys = set(
        LegalHold.objects.filter(released_at__isnull=True)
        .exclude(subject_key="")
        .values_list("subject_key", "namespace")
    )
    keys.update(
        Restriction.objects.filter(ended_at__isnull=True).values_list(
            "subject__key", "subject__namespace"
        )
    )
    if not keys:
        return []
    pks = {
        (s.key, s.namespace): s.pk
        for s in Subject.objects.filter(key__in=[k for k, _ in keys]).only("pk", "key", "namespace")
    }
    return [SubjectRef(key=k, namespace=ns, pk=pks.get((k, ns))) for k, ns in sorted(keys)]


def policy_is_held(policy: RetentionPolicy) -> bool:
    return LegalHold.objects.filter(policy=policy, released_at__isnull=True).exists()


def policy_purpose_keys(policy: RetentionPolicy) -> tuple[str, ...]:
    """The purposes whose withdrawal reaches this policy's target: the policy's own, or those
    an external or lake table was configured with."""
    if policy.purpose_id is not None:
        return (policy.purpose.key,)  # type: ignore[union-attr]
    target = targets().get(policy.target)
    return target.purposes if target else ()


def policy_purpose_key(policy: RetentionPolicy) -> str | None:
    """The first of `policy_purpose_keys` (what a policy shows as its purpose)."""
    keys = policy_purpose_keys(policy)
    return keys[0] if keys else None


def policy_list() -> QuerySet[RetentionPolicy]:
    return RetentionPolicy.objects.select_related("purpose").order_by("target", "name")


def policy_get(*, policy_id: int) -> RetentionPolicy | None:
    return RetentionPolicy.objects.select_related("purpose").filter(pk=policy_id).first()


def run_get(*, run_id: Any) -> PurgeRun | None:
    return PurgeRun.objects.prefetch_related("items").filter(pk=run_id).first()


def erasure_request_get(*, request_id: Any) -> ErasureRequest | None:
    return ErasureRequest.objects.filter(pk=request_id).first()


def access_request_get(*, request_id: Any) -> AccessRequest | None:
    return AccessRequest.objects.filter(pk=request_id).first()


def access_export(request: AccessRequest) -> dict[str, Any] | None:
    """The finished export, decrypted; None until the request is complete."""
    if request.status != RequestStatus.COMPLETE or request.export_encrypted is None:
        return None
    export: dict[str, Any] = json.loads(
        crypto.decrypt(bytes(request.export_encrypted), aad=str(request.pk).encode())
    )
    return export


def erasure_targets_done(request: ErasureRequest) -> dict[str, dict[str, bool]]:
    """Per target an erasure reaches, whether it is done. The names come from the registry,
    not from the request's progress, so the answer has the same shape at every step and for
    every subject, known or not."""
    progress = (request.progress or {}).get("targets", {})
    return {
        name: {"done": progress.get(name, {}).get("status") == "done"}
        for name, target in targets().items()
        if target.holds_personal_data
    }


# A rights request still owed to its subject; one held by a legal hold is not (yet).
_OPEN = [RequestStatus.PENDING, RequestStatus.RUNNING, RequestStatus.FAILED]


def requests_open(*, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """Per kind (erasure, access): how many requests are open, and how many of those are
    past their due date; one query per kind."""
    moment = now or timezone.now()
    counts = {}
    for kind, model in (("erasure", ErasureRequest), ("access", AccessRequest)):
        found = model.objects.filter(status__in=_OPEN).aggregate(
            open=Count("pk"), overdue=Count("pk", filter=Q(due_at__lt=moment))
        )
        counts[kind] = (found["open"], found["overdue"])
    return counts


def requests_overdue(*, now: datetime | None = None) -> dict[str, int]:
    return {kind: overdue for kind, (_, overdue) in requests_open(now=now).items()}


def retention_for_purpose(purpose: Purpose) -> list[dict[str, Any]]:
    """The retention that applies to a purpose's data, for the Art. 30 record: the policies
    tied to it (withdrawal removes rows there) and the ledger's proof-keeping period."""
    rows = []
    for policy in RetentionPolicy.objects.filter(enabled=True).order_by("target", "name"):
        target = targets().get(policy.target)
        tied = purpose.key in policy_purpose_keys(policy)
        if not tied and not (target and target.keeps_proof_of_consent):
            continue
        rows.append(
            {
                "target": policy.target,
                "policy": policy.name,
                "keep_for_days": policy.keep_for.total_seconds() / 86400,
                "action": policy.action,
                "on_withdrawal": "removed" if tied else "kept as proof until the period ends",
            }
        )
    return rows


def subject_export(*, ref: SubjectRef) -> dict[str, Any]:
    """Everything held about a subject across registered targets, consent history included."""
    subject = Subject.objects.filter(namespace=ref.namespace, key=ref.key).first()
    full = SubjectRef(key=ref.key, namespace=ref.namespace, pk=subject.pk if subject else None)
    export: dict[str, Any] = {
        "format": "consent-governance-access-export/1",
        "generated_at": timezone.now(),
        "subject": None,
        "consent_states": [],
        "consent_history": [],
        "restrictions": [],
        "staff_notes": [],
        "targets": {},
    }
    if subject is not None:
        export["subject"] = {
            "identifier": identity.decrypt_identifier(
                subject.identifier_encrypted, key=subject.key
            ),
            "namespace": subject.namespace,
            "subject_key": subject.key,
            "created_at": subject.created_at,
            "erased_at": subject.erased_at,
        }
        export["consent_states"] = [
            {
                "purpose": s.purpose.key,
                "status": s.status,
                "notice_version": s.notice_version,
                "since": s.since,
                "expires_at": s.expires_at,
            }
            for s in ConsentState.objects.filter(subject=subject).select_related("purpose")
        ]
        export["consent_history"] = [
            {
                "seq": e.seq,
                "purpose": e.purpose.key if e.purpose is not None else None,
                "action": e.action,
                "notice_version": e.notice_version,
                "language": e.language,
                "effective_at": e.effective_at,
                "recorded_at": e.recorded_at,
                "expires_at": e.expires_at,
                "source": e.source,
                "indication_method": e.indication_method,
                "given_by": e.given_by,
                "receipt_id": e.receipt_id,
                "hash": e.hash,
            }
            for e in ConsentEvent.objects.filter(subject=subject)
            .select_related("purpose")
            .order_by("seq")
        ]
        export["restrictions"] = restriction_periods(subject=subject)
        # Notes staff kept on actions for the person (Art. 15 covers them); the staff
        # member's name is theirs, not the person's, so it stays out.
        export["staff_notes"] = [
            {"created_at": n.note.created_at, "action": n.note.action, "note": n.text}
            for n in reversed(person_notes(subject=subject))
        ]
    for target in targets().values():
        if not target.holds_personal_data or target.name == "consent.ConsentEvent":
            continue
        if target.erasure == ErasureMode.LINEAGE:
            export["targets"][target.name] = [
                {"decision_id": r["decision_id"]} for r in target.subject_rows(full)
            ]
            continue
        export["targets"][target.name] = target.subject_rows(full)
    return export
