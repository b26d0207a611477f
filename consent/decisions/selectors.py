"""Reads of decisions and data uses: who may read a decision, its drift (subjects it allowed
that are denied now), the decisions that used a subject, and the records of processing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from consent import identity
from consent.checks.gather import facts_for
from consent.models import DataUse, Decision, DecisionLineage, Subject
from governance.actors import Actor
from governance.api.common import iso
from governance.errors import NotFound
from governance.models import ApiClient, Scope

# --- decisions ------------------------------------------------------------------------------


def decisions_visible_to(*, client: ApiClient) -> QuerySet[Decision]:
    """The decisions an API client may read: those it made (with any of its keys), or all of
    them for a key with `admin`. Drift names people, so another pipeline's decisions stay
    out of reach of a mere `checks` key."""
    decisions = Decision.objects.all()
    if client.has_scope(Scope.ADMIN):
        return decisions
    actor = Actor.for_client(client)
    return decisions.filter(actor_type=actor.type, actor_id=actor.id)


def decision_get(*, decision_id: str, client: ApiClient) -> Decision:
    """The decision, if the client may read it; NotFound otherwise (whether or not it
    exists, so ids cannot be probed)."""
    try:
        parsed = uuid.UUID(decision_id)
    except ValueError as exc:
        raise NotFound("No decision with that id.") from exc
    decision = (
        decisions_visible_to(client=client)
        .select_related("purpose", "data_use")
        .filter(pk=parsed)
        .first()
    )
    if decision is None:
        raise NotFound("No decision with that id.")
    return decision


def decision_lineage_count(*, decision: Decision) -> int:
    return DecisionLineage.objects.filter(decision_id=decision.pk).count()


@dataclass(frozen=True)
class Drifted:
    subject_id: str | None
    reason: str
    event_id: str | None


def decision_drift(
    *, decision: Decision, limit: int, cursor: int = 0, now: datetime | None = None
) -> tuple[list[Drifted], int | None]:
    """Subjects the decision allowed that are denied now, by their identifiers, with the reason.

    Walks the lineage in subject order, a batch at a time; returns up to `limit` and the
    cursor to continue from (None at the end). Erased subjects are left out: they leave the
    lineage with their data and are announced when erased.
    """
    moment = now or timezone.now()
    facts = facts_for(connection)
    rule = facts.purpose_rule_of(decision.purpose_id)
    found: list[Drifted] = []
    after = cursor
    while True:
        batch = list(
            DecisionLineage.objects.filter(decision_id=decision.pk, subject_id__gt=after)
            .order_by("subject_id")
            .values_list("subject_id", flat=True)[:2000]
        )
        if not batch:
            return found, None
        subjects = Subject.objects.in_bulk(batch)
        live = [s for pk in batch if (s := subjects.get(pk)) and s.erased_at is None]
        with transaction.atomic():
            answers = facts.standings([s.key for s in live], rule, at=moment, as_of=False)
        verdicts = {s.pk: (s, v) for s, v in zip(live, answers.verdicts, strict=True)}
        for pk in batch:
            after = pk
            if pk not in verdicts:
                continue
            subject, verdict = verdicts[pk]
            if verdict.allowed:
                continue
            identifier = identity.decrypt_identifier(subject.identifier_encrypted, key=subject.key)
            found.append(Drifted(identifier, verdict.reason, verdict.event_id))
            if len(found) >= limit:
                return found, after


def decisions_for_subject(
    *, identifier: str, client: ApiClient, limit: int = 100
) -> list[Decision]:
    """Complete decisions, among those the client may read, whose lineage includes the
    subject: which models used their data."""
    identity.validate_identifier(identifier)
    subject = Subject.objects.filter(
        namespace=Subject.Namespace.ACCOUNT, key=identity.subject_key(identifier)
    ).first()
    if subject is None:
        return []
    return decisions_using_subject(
        subject=subject, decisions=decisions_visible_to(client=client), limit=limit
    )


def decisions_using_subject(
    *, subject: Subject, decisions: QuerySet[Decision] | None = None, limit: int = 100
) -> list[Decision]:
    """Complete decisions (among `decisions`, default all) whose lineage includes the
    subject, newest first: for staff, every client's."""
    ids = DecisionLineage.objects.filter(subject_id=subject.pk).values("decision_id")
    found = Decision.objects.all() if decisions is None else decisions
    return list(
        found.filter(pk__in=ids, status=Decision.Status.COMPLETE)
        .select_related("purpose", "data_use")
        .order_by("-created_at")[:limit]
    )


# --- data uses ------------------------------------------------------------------------------


def data_use_list() -> QuerySet[DataUse]:
    return DataUse.objects.select_related("purpose").order_by("key")


# Apps further out (retention) add columns to the records of processing without consent
# importing them: each callable returns extra fields for one data use.
RECORD_OF_PROCESSING_COLUMNS: list[Callable[[DataUse], dict[str, Any]]] = []


def records_of_processing_register(columns: Callable[[DataUse], dict[str, Any]]) -> None:
    if columns not in RECORD_OF_PROCESSING_COLUMNS:
        RECORD_OF_PROCESSING_COLUMNS.append(columns)


def data_use_export_rows() -> list[dict[str, Any]]:
    """The records of processing (GDPR Art. 30): one row per data use."""
    rows = [
        {
            "key": du.key,
            "name": du.name,
            "description": du.description,
            "purpose": du.purpose.key,
            "purpose_name": du.purpose.name,
            "legal_basis": du.purpose.legal_basis,
            "owner": du.owner,
            "data_categories": list(du.data_categories),
            "recipients": list(du.recipients),
            "datasets": list(du.datasets),
            "active": du.active,
            "created_at": iso(du.created_at),
            **{k: v for columns in RECORD_OF_PROCESSING_COLUMNS for k, v in columns(du).items()},
        }
        for du in data_use_list()
    ]
    return rows
