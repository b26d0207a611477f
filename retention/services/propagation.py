"""A withdrawal's reach: the subject's rows go from every target tied to the purpose."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent import identity
from consent.models import Action, ConsentEvent, ConsentState, Source
from governance.audit import audit_record
from retention import selectors
from retention.models import RetentionPolicy, Watermark
from retention.registry import target_get
from retention.services import SYSTEM
from retention.targets.base import SubjectRef

WITHDRAWALS_WATERMARK = "withdrawals"


def withdrawals_propagate(*, now: datetime | None = None, batch: int = 500) -> int:
    """Reads `withdrawn` events from the ledger since the watermark and removes the subject's
    rows in every target tied to that purpose (held ones excepted). Returns events handled.

    What a removal leaves on storage (a lake table's old files) is deleted by the target's
    `settle`, which the policy's next enforcement run calls once `settle_after` has passed.

    Refusals and GPC signals are never read here: they stop processing, they delete nothing.
    An imported withdrawal reaches the targets only while it is the person's standing
    decision: a past withdrawal the person has since gone back on (a later grant) deletes
    nothing.
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
            "id",
            "recorded_at",
            "purpose__key",
            "subject_id",
            "subject__key",
            "subject__namespace",
            "subject__identifier_encrypted",
            "source",
        )[:batch]
    )
    standing = set(
        ConsentState.objects.filter(
            event_id__in=[r["id"] for r in rows if r["source"] == Source.IMPORT]
        ).values_list("event_id", flat=True)
    )
    tied: dict[str, list[RetentionPolicy]] = {}
    for policy in RetentionPolicy.objects.filter(enabled=True).select_related("purpose"):
        for key in selectors.policy_purpose_keys(policy):
            tied.setdefault(key, []).append(policy)
    held_keys = {r.key for r in selectors.held_subjects()}
    for row in rows:
        # The identifier reaches tables keyed by it (lake tables); the keyed hash the rest.
        ref = SubjectRef(
            key=row["subject__key"],
            namespace=row["subject__namespace"],
            pk=row["subject_id"],
            identifier=identity.decrypt_identifier(
                row["subject__identifier_encrypted"], key=row["subject__key"]
            ),
        )
        report: dict[str, Any] = {}
        superseded = row["source"] == Source.IMPORT and row["id"] not in standing
        for policy in [] if superseded else tied.get(row["purpose__key"], []):
            target = target_get(policy.target)
            if target is None:
                continue
            if ref.key in held_keys or selectors.policy_is_held(policy):
                report[target.name] = "held"
                continue
            report[target.name] = target.subject_remove(ref, action=policy.action)
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
