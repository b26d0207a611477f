"""Reads behind the Person page: finding a person by identifier, their standing per
purpose (the checks' own fact gatherer and decision rule), their history page with chain
status, linked devices, the decisions that used them, staff notes, and the record to
download."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from consent import identity
from consent.checks.gather import facts_for
from consent.checks.rule import PurposeRule, Verdict
from consent.crypto_display import identifier_or_erased
from consent.decisions.selectors import decisions_using_subject
from consent.ledger.verify import ledger_verify
from consent.models import (
    ConsentEvent,
    ConsentState,
    Decision,
    Purpose,
    Subject,
    SubjectLink,
    SubjectNote,
)
from governance import crypto
from governance.api.common import iso

HISTORY_PER_PAGE = 25


def person_find(*, identifier: str, namespace: str | None = None) -> list[Subject]:
    """The subjects named exactly by `identifier`: its keyed hash looked up in the given
    namespace, or in every namespace when none is given. Never a scan of decrypted values,
    so a prefix or a near miss finds nothing."""
    identity.validate_identifier(identifier, field="q")
    found = Subject.objects.filter(key=identity.subject_key(identifier))
    if namespace:
        found = found.filter(namespace=namespace)
    return list(found.order_by("namespace"))


def person_get(*, ref: str, namespace: str | None = None) -> Subject | None:
    """A subject by primary key (digits) or by subject key (hex, with `namespace` when the
    key names subjects in more than one)."""
    if ref.isdigit():
        return Subject.objects.filter(pk=int(ref)).first()
    found = Subject.objects.filter(key=ref)
    if namespace:
        found = found.filter(namespace=namespace)
    subjects = list(found[:2])
    return subjects[0] if len(subjects) == 1 else None


@dataclass(frozen=True)
class PurposeStatus:
    """A purpose's standing for the person: the stored state and, for an account, the
    check's own answer (None for a device id, which checks never answer for)."""

    purpose: Purpose
    state: ConsentState | None
    verdict: Verdict | None


def _verdicts(subject: Subject, rules: list[PurposeRule], at: datetime) -> dict[int, Verdict]:
    """What a check would answer now, per purpose id, through the checks' one fact gatherer
    and decision rule (consent.checks)."""
    if subject.namespace != Subject.Namespace.ACCOUNT:
        return {}
    facts = facts_for(connection)
    with transaction.atomic():
        return {
            rule.id: facts.standings([subject.key], rule, at=at, as_of=False).verdicts[0]
            for rule in rules
        }


def person_statuses(*, subject: Subject, now: datetime | None = None) -> list[PurposeStatus]:
    """Every active purpose (and any other the person has a state for), by key."""
    moment = now or timezone.now()
    states = {
        s.purpose_id: s
        for s in ConsentState.objects.filter(subject=subject).select_related("purpose")
    }
    purposes = Purpose.objects.filter(Q(active=True) | Q(pk__in=states)).order_by("key")
    facts = facts_for(connection)
    rules = [facts.purpose_rule_of(p.pk) for p in purposes]
    verdicts = _verdicts(subject, rules, moment)
    return [PurposeStatus(p, states.get(p.pk), verdicts.get(p.pk)) for p in purposes]


@dataclass
class ChainStatus:
    """The person's chain as verify_ledger sees it: the events it names, and head breaks."""

    broken_events: set[str] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.messages

    def event_ok(self, event: ConsentEvent) -> bool:
        return str(event.id) not in self.broken_events


def person_chain(*, subject: Subject) -> ChainStatus:
    report = ledger_verify(subject_ids=[subject.pk])
    return ChainStatus(
        broken_events={b.event_id for b in report.breaks if b.event_id},
        messages=[str(b) for b in report.breaks],
    )


def person_history(*, subject: Subject, page: Any = 1, per_page: int = HISTORY_PER_PAGE) -> Page:
    """One page of the person's events, newest first (an out-of-range page reads as the
    last)."""
    events = ConsentEvent.objects.filter(subject=subject).select_related("purpose").order_by("-seq")
    return Paginator(events, per_page).get_page(page)


def person_links(*, subject: Subject) -> list[SubjectLink]:
    """Devices linked to this account, or accounts this device was linked to."""
    return list(
        SubjectLink.objects.filter(Q(account_subject=subject) | Q(device_subject=subject))
        .select_related("device_subject", "account_subject", "property")
        .order_by("-created_at")
    )


@dataclass(frozen=True)
class DecisionUse:
    """A decision whose lineage holds the person, and whether it drifted for them: the
    decision allowed them and a check now denies (with the reason)."""

    decision: Decision
    verdict: Verdict | None

    @property
    def drifted(self) -> bool:
        return self.verdict is not None and not self.verdict.allowed


def person_decisions(
    *, subject: Subject, limit: int = 100, now: datetime | None = None
) -> list[DecisionUse]:
    """Which models used this person: complete decisions with them in their lineage, every
    API client's, newest first, each with the person's drift."""
    decisions = decisions_using_subject(subject=subject, limit=limit)
    facts = facts_for(connection)
    rules = [facts.purpose_rule_of(pid) for pid in {d.purpose_id for d in decisions}]
    verdicts = _verdicts(subject, rules, now or timezone.now())
    return [DecisionUse(d, verdicts.get(d.purpose_id)) for d in decisions]


@dataclass(frozen=True)
class NoteShown:
    note: SubjectNote
    text: str


def person_notes(*, subject: Subject) -> list[NoteShown]:
    """Staff notes on actions taken for the person, decrypted for staff."""
    return [
        NoteShown(n, crypto.decrypt(bytes(n.note_encrypted), aad=str(n.pk).encode()).decode())
        for n in SubjectNote.objects.filter(subject=subject).order_by("-created_at")
    ]


HISTORY_COLUMNS = (
    "seq",
    "effective_at",
    "recorded_at",
    "purpose",
    "action",
    "notice_version",
    "language",
    "expires_at",
    "source",
    "indication_method",
    "given_by",
    "actor_type",
    "actor_label",
    "receipt_id",
    "hash",
    "chain_ok",
)


def person_history_rows(*, subject: Subject, chain: ChainStatus) -> list[dict[str, Any]]:
    """The whole history, oldest first, as flat rows (the CSV download and the JSON's
    `events`)."""
    return [
        {
            "seq": e.seq,
            "effective_at": iso(e.effective_at),
            "recorded_at": iso(e.recorded_at),
            "purpose": e.purpose.key if e.purpose else None,
            "action": e.action,
            "notice_version": e.notice_version,
            "language": e.language,
            "expires_at": iso(e.expires_at),
            "source": e.source,
            "indication_method": e.indication_method,
            "given_by": e.given_by,
            "actor_type": e.actor_type,
            "actor_label": e.actor_label,
            "receipt_id": str(e.receipt_id),
            "hash": e.hash,
            "chain_ok": chain.event_ok(e),
        }
        for e in ConsentEvent.objects.filter(subject=subject)
        .select_related("purpose")
        .order_by("seq")
    ]


def person_record(*, subject: Subject, now: datetime | None = None) -> dict[str, Any]:
    """The person's record as consent knows it (the download; other apps add their parts)."""
    chain = person_chain(subject=subject)
    return {
        "format": "consent-governance-person-record/1",
        "generated_at": iso(now or timezone.now()),
        "subject": {
            "identifier": identifier_or_erased(subject),
            "namespace": subject.namespace,
            "subject_key": subject.key,
            "created_at": iso(subject.created_at),
            "erased_at": iso(subject.erased_at),
        },
        "statuses": [
            {
                "purpose": s.purpose.key,
                "state": s.state.status if s.state else None,
                "since": iso(s.state.since) if s.state else None,
                "expires_at": iso(s.state.expires_at) if s.state else None,
                "allowed": s.verdict.allowed if s.verdict else None,
                "reason": s.verdict.reason if s.verdict else None,
            }
            for s in person_statuses(subject=subject, now=now)
        ],
        "chain_ok": chain.ok,
        "events": person_history_rows(subject=subject, chain=chain),
        "links": [
            {
                "device_subject": link.device_subject.key,
                "account_subject": link.account_subject.key,
                "property": link.property.name if link.property else None,
                "carried": list(link.carried),
                "created_at": iso(link.created_at),
            }
            for link in person_links(subject=subject)
        ],
        "decisions": [
            {
                "decision_id": str(u.decision.pk),
                "created_at": iso(u.decision.created_at),
                "purpose": u.decision.purpose.key,
                "data_use": u.decision.data_use.key if u.decision.data_use else None,
                "actor": u.decision.actor_label,
                "drifted": u.drifted,
                "reason_now": u.verdict.reason if u.verdict else None,
            }
            for u in person_decisions(subject=subject, now=now)
        ],
        "notes": [
            {
                "action": n.note.action,
                "author": n.note.author,
                "created_at": iso(n.note.created_at),
                "note": n.text,
            }
            for n in person_notes(subject=subject)
        ],
    }
