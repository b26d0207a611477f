"""Lineage of decisions: which subjects a decision allowed, and forgetting an erased one."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import F

from consent.models import Decision, DecisionLineage, Subject


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
