"""Writes of decisions and data uses: registering a data use, the Decision (with lineage)
that every bulk or streamed check leaves, and forgetting an erased subject."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F

from consent.checks.rule import PurposeRule
from consent.errors import (
    DataUsePurposeMismatch,
    DuplicateDataUse,
    UnknownDataUse,
    UnknownPurpose,
)
from consent.models import DataUse, Decision, DecisionLineage, Purpose, Subject
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_record
from governance.errors import InvalidRequest

# --- data uses ----------------------------------------------------------------------------


def _string_list(value: Any, field_name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(
            f"{field_name} must be a list of non-empty strings.", detail={"field": field_name}
        )
    return list(value)


@transaction.atomic
def data_use_create(
    *,
    key: str,
    name: str,
    purpose_key: str,
    actor: Actor,
    owner: str = "",
    description: str = "",
    data_categories: Sequence[str] = (),
    recipients: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> DataUse:
    """Registers a processing activity (a record of processing) and audits it."""
    purpose = Purpose.objects.filter(key=purpose_key, active=True).first()
    if purpose is None:
        raise UnknownPurpose(detail={"purpose": purpose_key})
    if DataUse.objects.filter(key=key).exists():
        raise DuplicateDataUse(detail={"key": key})
    data_use = DataUse.objects.create(
        key=key,
        name=name,
        purpose=purpose,
        owner=owner,
        description=description,
        data_categories=_string_list(list(data_categories), "data_categories"),
        recipients=_string_list(list(recipients), "recipients"),
        datasets=_string_list(list(datasets), "datasets"),
    )
    audit_record(
        actor=actor,
        action="data_use.create",
        target_type="data_use",
        target_id=data_use.key,
        detail={"purpose": purpose.key, "owner": owner},
    )
    return data_use


def data_use_for_check(key: Any, rule: PurposeRule) -> DataUse | None:
    """The named data use, which must serve the checked purpose; None when not named."""
    if key is None or key == "":
        return None
    data_use = (
        DataUse.objects.filter(key=key, active=True).first() if isinstance(key, str) else None
    )
    if data_use is None:
        raise UnknownDataUse(detail={"data_use": key})
    if data_use.purpose_id != rule.id:
        raise DataUsePurposeMismatch(
            detail={"data_use": key, "data_use_purpose": data_use.purpose.key, "purpose": rule.key}
        )
    return data_use


# --- decisions ------------------------------------------------------------------------------


def decision_new(
    *,
    actor: Actor,
    rule: PurposeRule,
    data_use: DataUse | None,
    as_of: datetime | None,
    at: datetime,
    mode: str,
    lineage: bool,
    now: datetime,
) -> Decision:
    """An unsaved Decision for a check by `actor` (saved by the check, in its transaction)."""
    return Decision(
        created_at=now,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        data_use=data_use,
        purpose_id=rule.id,
        as_of=at,
        as_of_requested=as_of is not None,
        mode=mode,
        lineage=lineage,
    )


def decision_audit(actor: Actor, decision: Decision, purpose_key: str) -> None:
    """One audit row per check (no identifiers: counts, purpose and the id-set digest)."""
    audit_record(
        actor=actor,
        action=f"checks.{decision.mode}",
        target_type="decision",
        target_id=str(decision.id),
        detail={
            "purpose": purpose_key,
            "data_use": decision.data_use.key if decision.data_use else None,
            "total": decision.total,
            "allowed": decision.allowed_count,
            "as_of": iso(decision.as_of) if decision.as_of_requested else None,
            "lineage": decision.lineage,
            "id_set_digest": decision.id_set_digest,
        },
    )


@transaction.atomic
def decision_finish(*, decision: Decision, status: str) -> None:
    """Marks a pending decision complete, or abandoned (its lineage then goes: never used)."""
    Decision.objects.filter(pk=decision.pk, status=Decision.Status.PENDING).update(status=status)
    decision.status = status
    if status == Decision.Status.ABANDONED:
        DecisionLineage.objects.filter(decision_id=decision.pk).delete()


def decisions_forget_subject(*, subject: Subject) -> list[uuid.UUID]:
    """Removes an erased subject from every decision's lineage and counts it on each.

    Returns the ids of the decisions that had used the subject (what model owners must
    unlearn); erasure announces them in `subject.erased`.
    """
    with transaction.atomic():
        rows = DecisionLineage.objects.filter(subject=subject)
        decision_ids = sorted(set(rows.values_list("decision_id", flat=True)), key=str)
        Decision.objects.filter(id__in=decision_ids).update(erased_since=F("erased_since") + 1)
        rows.delete()
    return decision_ids
