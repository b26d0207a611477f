"""The one write path of the ledger: lock -> build -> append, for every writer (consent
records and withdrawals, the banner, expiry, device linking, imports; rectification locks
and appends through the same store, building its event here).

A writer names the subject (SubjectRef), says how it writes (Write: actor, source,
proof context, audit) and gives a `plan` that picks the entries from the subject's current
states, read under its lock. `ledger_write` then builds the events of the subject's chain,
their states, proof context, outbox and audit rows and appends them all in one transaction
through the store picked for the database (store_pg or store_orm). `ledger_write_batch`
does the same for many subjects at once (imports): one lock statement, one append.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction

from consent import identity
from consent.ledger import chain
from consent.ledger.states import state_of
from consent.ledger.store import LedgerStore, Rows, SubjectRef
from consent.ledger.store_orm import OrmLedgerStore
from consent.ledger.store_pg import PostgresLedgerStore
from consent.models import (
    RECTIFIED,
    ConsentContext,
    ConsentEvent,
    ConsentState,
    GivenBy,
    Purpose,
    Subject,
    SubjectKeyChange,
)
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_build
from governance.db import PerDatabase, unsaved
from governance.metrics import consent_events_count
from governance.outbox import outbox_build, outbox_dispatch_on_commit

_STORES: PerDatabase[LedgerStore] = PerDatabase(
    postgresql=PostgresLedgerStore(), portable=OrmLedgerStore()
)


def ledger_store() -> LedgerStore:
    """The store for the default database: chosen here, once, and nowhere else."""
    return _STORES()


@dataclass(frozen=True)
class ContextInput:
    locale: str = ""
    jurisdiction: str = ""
    page: str = ""
    ip: str = ""
    user_agent: str = ""


@dataclass
class RecordResult:
    receipt_id: uuid.UUID | None
    subject: Subject | None
    recorded_at: datetime
    events: list[ConsentEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """One event a plan asks for. The fields left None take the Write's values (effective
    now); a carried-over or expired decision keeps its own. No purpose: a `rectified`
    event, which is about the subject."""

    purpose: Purpose | None
    action: str
    notice_version: int
    expires_at: datetime | None = None
    effective_at: datetime | None = None
    source: str | None = None
    indication_method: str | None = None
    given_by: str | None = None
    language: str | None = None
    # False: the event joins the history but leaves the current state alone (an imported
    # decision older than the purpose's standing one).
    current: bool = True


@dataclass(frozen=True)
class Write:
    """How a writer appends: who, by what means, with what proof and audit."""

    actor: Actor
    source: str = ""
    indication_method: str = ""
    given_by: str = GivenBy.SUBJECT
    # The proof context kept under the receipt; None records none (a system write).
    context: ContextInput | None = None
    # The audit row's action; None when the caller audits the whole operation itself.
    audit_action: str | None = "consent.record"
    audit_detail: Mapping[str, Any] = field(default_factory=dict)
    # Added to every outbox payload.
    announce: Mapping[str, Any] = field(default_factory=dict)
    # False: no outbox row per event (an import announces itself once, when complete).
    announce_events: bool = True


Plan = Callable[[Mapping[int, ConsentState]], list[Entry]]


def context_build(
    *, receipt_id: uuid.UUID, context: ContextInput, now: datetime
) -> tuple[ConsentContext, str]:
    """The unsaved proof context and its digest (which the events carry)."""
    row = ConsentContext(
        receipt_id=receipt_id,
        ip_hash=identity.keyed_hash(context.ip, purpose="ip") if context.ip else "",
        user_agent_hash=(
            identity.keyed_hash(context.user_agent, purpose="user-agent")
            if context.user_agent
            else ""
        ),
        page=context.page[:2000],
        locale=context.locale[:16],
        jurisdiction=context.jurisdiction[:32],
        created_at=now,
    )
    digest = chain.context_digest(
        receipt_id=str(receipt_id),
        ip_hash=row.ip_hash,
        user_agent_hash=row.user_agent_hash,
        page=row.page,
        locale=row.locale,
        jurisdiction=row.jurisdiction,
    )
    return row, digest


def event_build(
    *,
    subject: Subject,
    entry: Entry,
    write: Write,
    recorded_at: datetime,
    receipt_id: uuid.UUID,
    context_digest: str,
    language: str,
) -> ConsentEvent:
    """The unsaved next event of a locked subject's chain; moves the subject's chain head
    in memory (the append saves both)."""
    seq = subject.last_seq + 1
    event = unsaved(
        ConsentEvent,
        {"subject": subject, "purpose": entry.purpose},
        id=uuid.uuid4(),
        subject_id=subject.id,
        seq=seq,
        purpose_id=entry.purpose.id if entry.purpose is not None else None,
        notice_version=entry.notice_version,
        language=entry.language if entry.language is not None else language,
        action=entry.action,
        effective_at=entry.effective_at or recorded_at,
        recorded_at=recorded_at,
        expires_at=entry.expires_at,
        source=entry.source or write.source,
        indication_method=entry.indication_method or write.indication_method,
        given_by=entry.given_by or write.given_by,
        actor_type=write.actor.type,
        actor_id=write.actor.id,
        actor_label=write.actor.label[:200],
        receipt_id=receipt_id,
        context_digest=context_digest,
        prev_hash=subject.chain_head,
        hash="",
    )
    event.hash = chain.event_hash_of(
        vars(event),
        subject_key=subject.key,
        purpose_key=entry.purpose.key if entry.purpose is not None else "",
    )
    subject.last_seq = seq
    subject.chain_head = event.hash
    return event


def rectified_event_build(
    *, subject: Subject, new_key: str, write: Write, now: datetime
) -> tuple[ConsentEvent, SubjectKeyChange]:
    """The unsaved `rectified` event of a locked subject and its key-change row: the event
    is the first one hashed with `new_key`, the events before it keep their hashes (the
    verifier takes each one's key from the key-change rows). Moves the subject's key and
    chain head in memory; the caller saves the key, the append the rest."""
    old_key = subject.key
    subject.key = new_key
    event = event_build(
        subject=subject,
        entry=Entry(purpose=None, action=RECTIFIED, notice_version=0),
        write=write,
        recorded_at=now,
        receipt_id=uuid.uuid4(),
        context_digest="",
        language="",
    )
    change = SubjectKeyChange(
        subject=subject,
        old_key=old_key,
        new_key=new_key,
        from_seq=event.seq,
        event_id=event.id,
        created_at=now,
    )
    return event, change


def event_payload(event: ConsentEvent) -> dict[str, Any]:
    """What subscribers learn of an event (the identifier is added at delivery)."""
    return {
        "event_id": str(event.id),
        "purpose": event.decided_purpose.key,
        "action": event.action,
        "notice_version": event.notice_version,
        "effective_at": iso(event.effective_at),
        "recorded_at": iso(event.recorded_at),
        "expires_at": iso(event.expires_at),
        "source": event.source,
        "receipt_id": str(event.receipt_id),
    }


def _language(context: ContextInput | None) -> str:
    if context is None:
        return ""
    return context.locale.split("-")[0].split("_")[0].lower()[:16] or "en"


def _rows_build(
    *, ref: SubjectRef, head: Subject, entries: list[Entry], write: Write, now: datetime
) -> tuple[Rows, RecordResult]:
    """The unsaved rows of one locked subject's append: events (moving its chain head),
    states, proof context, outbox and audit rows."""
    receipt_id = uuid.uuid4()
    contexts: list[ConsentContext] = []
    digest = ""
    if write.context is not None:
        context_row, digest = context_build(receipt_id=receipt_id, context=write.context, now=now)
        contexts.append(context_row)
    events = [
        event_build(
            subject=head,
            entry=entry,
            write=write,
            recorded_at=now,
            receipt_id=receipt_id,
            context_digest=digest,
            language=_language(write.context),
        )
        for entry in entries
    ]
    # The last current event of each purpose leaves its state (a plan may name a purpose
    # more than once: an import replays a history).
    last: dict[int, ConsentEvent] = {}
    for event, entry in zip(events, entries, strict=True):
        if entry.current:
            last[event.decided_purpose.id] = event
    announcements = []
    if write.announce_events:
        identifier = (
            ref.identifier
            if ref.identifier is not None
            else identity.decrypt_identifier(head.identifier_encrypted, key=head.key)
        )
        announcements = [
            outbox_build(
                event_type=f"consent.{event.action}",
                payload={**event_payload(event), **write.announce},
                subject_key=head.key,
                subject_identifier=identifier,
            )
            for event in events
        ]
    audits = []
    if write.audit_action is not None:
        audits.append(
            audit_build(
                actor=write.actor,
                action=write.audit_action,
                target_type="receipt",
                target_id=str(receipt_id),
                ip=write.context.ip if write.context is not None else "",
                detail={
                    "subject_key": head.key,
                    **write.audit_detail,
                    "events": [[e.decided_purpose.key, e.action] for e in events],
                },
            )
        )
    rows = Rows(
        subject=head,
        events=events,
        states=[state_of(event) for event in last.values()],
        announcements=announcements,
        contexts=contexts,
        audits=audits,
    )
    return rows, RecordResult(receipt_id=receipt_id, subject=head, recorded_at=now, events=events)


def ledger_write(*, subject: SubjectRef, plan: Plan, write: Write, now: datetime) -> RecordResult:
    """Locks the subject, lets `plan` choose the entries from its current states, and
    appends the events with their states, proof context, outbox and audit rows in one
    transaction; the outbox is dispatched on commit. Nothing is written when the plan
    chooses nothing (or the subject does not exist and `subject` cannot create it)."""
    store = ledger_store()
    # Nested in a caller's transaction (the banner, linking, an idempotent request), the
    # write is part of it: a failure fails the caller whole, as every caller lets it, and
    # no savepoint costs two more round trips.
    with transaction.atomic(savepoint=False):
        locked = store.subject_lock(subject)
        if locked is None:
            return RecordResult(receipt_id=None, subject=None, recorded_at=now)
        head, states = locked
        entries = plan(states)
        if not entries:
            return RecordResult(receipt_id=None, subject=head, recorded_at=now)
        rows, result = _rows_build(ref=subject, head=head, entries=entries, write=write, now=now)
        store.append(rows)
        if rows.announcements:
            outbox_dispatch_on_commit()
        _count_on_commit(rows.events)
        return result


def ledger_write_batch(
    *, items: Sequence[tuple[SubjectRef, Plan]], write: Write, now: datetime
) -> list[RecordResult]:
    """`ledger_write` for many subjects in one transaction (each named once): the subjects
    are locked together (in key order, so two batches cannot deadlock), each plan chooses
    from its subject's states, and every row is appended at once. One result per item, in
    order."""
    refs = [ref for ref, _ in items]
    if len({(r.namespace, r.key) for r in refs}) != len(refs):
        raise ValueError("a batch names each subject once")
    store = ledger_store()
    with transaction.atomic(savepoint=False):
        locked = store.subjects_lock(refs)
        results: list[RecordResult] = []
        appends: list[Rows] = []
        for ref, plan in items:
            found = locked.get((ref.namespace, ref.key))
            if found is None:
                results.append(RecordResult(receipt_id=None, subject=None, recorded_at=now))
                continue
            head, states = found
            entries = plan(states)
            if not entries:
                results.append(RecordResult(receipt_id=None, subject=head, recorded_at=now))
                continue
            rows, result = _rows_build(ref=ref, head=head, entries=entries, write=write, now=now)
            appends.append(rows)
            results.append(result)
        store.append_batch(appends)
        if any(rows.announcements for rows in appends):
            outbox_dispatch_on_commit()
        _count_on_commit([event for rows in appends for event in rows.events])
        return results


def _count_on_commit(events: Sequence[ConsentEvent]) -> None:
    # Counted once committed: a write nested in a caller's transaction may still roll back.
    counted = [(e.purpose.key, e.action) for e in events if e.purpose is not None]
    transaction.on_commit(lambda: consent_events_count(counted))
