"""Reads of the check side: one subject's check, decisions, drift, data uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from consent import identity
from consent.checks import (
    PurposeRule,
    lookup,
    purpose_rule_for,
    purpose_rule_get,
)
from consent.decisions import Standing, Verdict, decide
from consent.errors import UnknownPurpose
from consent.models import (
    ConsentState,
    DataUse,
    Decision,
    DecisionLineage,
    Subject,
)
from governance import db
from governance.actors import Actor
from governance.errors import InvalidRequest, NotFound
from governance.models import ApiClient, Scope

_ONE_PURPOSE = """
SELECT p.id, p.key, p.legal_basis, p.gpc_opt_out,
       ARRAY(SELECT nv.version FROM consent_noticeversion nv
             WHERE nv.purpose_id = p.id AND nv.material ORDER BY nv.version),
       ARRAY(SELECT nv.published_at FROM consent_noticeversion nv
             WHERE nv.purpose_id = p.id AND nv.material ORDER BY nv.version),
       s.erased_at, {facts}
FROM consent_purpose p
LEFT JOIN consent_subject s ON s.namespace = %s AND s.key = %s
{join}
WHERE p.key = %s AND p.active
"""
_ONE_CURRENT = _ONE_PURPOSE.format(
    facts="cs.status, cs.notice_version, cs.since, cs.expires_at, cs.event_id::text, cs.gpc",
    join="LEFT JOIN consent_consentstate cs ON cs.subject_id = s.id AND cs.purpose_id = p.id",
)
_ONE_AS_OF = _ONE_PURPOSE.format(
    facts="e.action, e.notice_version, e.effective_at, e.expires_at, e.id::text, e.source = 'gpc'",
    join="""LEFT JOIN LATERAL (
    SELECT ev.action, ev.notice_version, ev.effective_at, ev.expires_at, ev.id, ev.source
    FROM consent_consentevent ev
    WHERE ev.subject_id = s.id AND ev.purpose_id = p.id AND ev.effective_at <= %s
    ORDER BY ev.effective_at DESC, ev.seq DESC
    LIMIT 1
) e ON true""",
)


def check_one(
    *, identifier: str, purpose_key: str, as_of: datetime | None
) -> tuple[PurposeRule, Verdict]:
    """The fast path for one subject: on PostgreSQL one indexed query (purpose, its material
    notices, subject and standing fact together), then the decision rule."""
    identity.validate_identifier(identifier)
    key = identity.subject_key(identifier)
    at = as_of or timezone.now()
    if connection.vendor != "postgresql":
        rule = purpose_rule_get(purpose_key)
        return rule, lookup([key], rule, at=at, as_of=as_of is not None, portable=True)[0].verdict
    account = Subject.Namespace.ACCOUNT.value
    # Prepared once per connection: a single check is the hottest read of the service.
    with db.server_cursor() as cursor:
        if as_of is None:
            cursor.execute(_ONE_CURRENT, (account, key, purpose_key), binary=True, prepare=True)
        else:
            cursor.execute(_ONE_AS_OF, (account, key, at, purpose_key), binary=True, prepare=True)
        row = cursor.fetchone()
    if row is None:
        raise UnknownPurpose(
            f"Unknown or inactive purpose: {purpose_key}.", detail={"purpose": purpose_key}
        )
    pid, pkey, basis, gpc_opt_out, versions, published, erased_at, *fact = row
    rule = PurposeRule(pid, pkey, basis, gpc_opt_out, tuple(zip(versions, published, strict=True)))
    action, version, since, expires_at, event_id, gpc = fact
    standing = (
        Standing(action, version, since, expires_at, event_id, bool(gpc))
        if action is not None
        else None
    )
    return rule, decide(rule=rule, standing=standing, erased_at=erased_at, at=at)


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
    rule = purpose_rule_for(decision.purpose)
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
        states = {
            s.subject_id: s
            for s in ConsentState.objects.filter(subject_id__in=batch, purpose_id=rule.id)
        }
        for pk in batch:
            after = pk
            subject = subjects.get(pk)
            if subject is None or subject.erased_at is not None:
                continue
            state = states.get(pk)
            standing = (
                Standing(
                    state.status,
                    state.notice_version,
                    state.since,
                    state.expires_at,
                    str(state.event_id),
                    state.gpc,
                )
                if state is not None
                else None
            )
            verdict = decide(rule=rule, standing=standing, erased_at=None, at=moment)
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
    ids = DecisionLineage.objects.filter(subject_id=subject.pk).values("decision_id")
    return list(
        decisions_visible_to(client=client)
        .filter(pk__in=ids, status=Decision.Status.COMPLETE)
        .select_related("purpose", "data_use")
        .order_by("-created_at")[:limit]
    )


def int_param(raw: str | None, *, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(
            f"{name} must be an integer from {low} to {high}.", detail={"field": name}
        )
    return int(raw)


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
            "created_at": du.created_at.isoformat(),
            **{k: v for columns in RECORD_OF_PROCESSING_COLUMNS for k, v in columns(du).items()},
        }
        for du in data_use_list()
    ]
    return rows
