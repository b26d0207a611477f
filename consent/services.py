"""Every write to purposes, notices, subjects and the consent ledger. One transaction each."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from consent import identity, ledger
from consent.errors import (
    DuplicatePurpose,
    GuardianRequired,
    NonAffirmativeIndication,
    NoticeVersionSuperseded,
    PurposeWithoutNotice,
    UnknownPurpose,
)
from consent.models import (
    AFFIRMATIVE_METHODS,
    Action,
    ConsentContext,
    ConsentEvent,
    ConsentState,
    GivenBy,
    IndicationMethod,
    NoticeText,
    NoticeVersion,
    Purpose,
    Source,
    Subject,
)
from governance import db
from governance.actors import Actor
from governance.audit import audit_build
from governance.errors import InvalidRequest
from governance.memo import Memo, memos_version, unix_time
from governance.models import AuditEvent, OutboxEvent
from governance.outbox import (
    OUTBOX_NEXT_SEQ_SQL,
    outbox_build,
    outbox_dispatch_on_commit,
    outbox_next_seq,
)


@dataclass(frozen=True)
class DecisionInput:
    purpose: str
    granted: bool
    notice_version: int | None = None


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


# --- purposes and notices -------------------------------------------------------------


def notice_text_hash(texts: Mapping[str, tuple[str, str]]) -> str:
    canonical = json.dumps(
        {lang: {"title": t, "body": b} for lang, (t, b) in sorted(texts.items())},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic
def notice_version_publish(
    *,
    purpose: Purpose,
    texts: Mapping[str, tuple[str, str]],
    material: bool = False,
    published_at: datetime | None = None,
) -> NoticeVersion:
    """Publishes the next version of a purpose's notice; earlier versions stay as they were."""
    if not texts:
        raise InvalidRequest("A notice version needs a text in at least one language.")
    Purpose.objects.select_for_update().filter(pk=purpose.pk).first()
    latest = NoticeVersion.objects.filter(purpose=purpose).aggregate(v=Max("version"))["v"] or 0
    version = NoticeVersion.objects.create(
        purpose=purpose,
        version=latest + 1,
        material=material,
        text_hash=notice_text_hash(texts),
        published_at=published_at or timezone.now(),
    )
    NoticeText.objects.bulk_create(
        NoticeText(notice_version=version, language=lang, title=title, body=body)
        for lang, (title, body) in texts.items()
    )
    return version


@transaction.atomic
def notice_version_rehash(*, notice_version: NoticeVersion) -> NoticeVersion:
    """Recomputes the text hash after texts were added to a version (admin creation)."""
    texts = {t.language: (t.title, t.body) for t in notice_version.texts.all()}
    notice_version.text_hash = notice_text_hash(texts)
    notice_version.save(update_fields=["text_hash"])
    return notice_version


@transaction.atomic
def purpose_create(
    *,
    key: str,
    name: str,
    legal_basis: str,
    description: str = "",
    dpv_concept: str = "",
    tcf_purpose_ids: Sequence[int] = (),
    data_categories: Sequence[str] = (),
    consent_ttl: timedelta | None = None,
    gpc_opt_out: bool = False,
    notice_texts: Mapping[str, tuple[str, str]] | None = None,
) -> Purpose:
    purpose = Purpose.objects.create(
        key=key,
        name=name,
        legal_basis=legal_basis,
        description=description,
        dpv_concept=dpv_concept,
        tcf_purpose_ids=list(tcf_purpose_ids),
        data_categories=list(data_categories),
        consent_ttl=consent_ttl,
        gpc_opt_out=gpc_opt_out,
    )
    notice_version_publish(
        purpose=purpose, texts=notice_texts or {"en": (name, description or name)}
    )
    return purpose


def current_notice_versions(purpose_ids: Sequence[int]) -> dict[int, int]:
    rows = (
        NoticeVersion.objects.filter(purpose_id__in=purpose_ids, published_at__lte=timezone.now())
        .values("purpose_id")
        .annotate(v=Max("version"))
    )
    return {row["purpose_id"]: row["v"] for row in rows}


# --- subjects ---------------------------------------------------------------------------


def subject_lock(*, identifier: str, namespace: str = Subject.Namespace.ACCOUNT) -> Subject:
    """Finds or creates the subject and locks its row until the transaction ends.

    The lock orders every write to one subject, which keeps its chain linear and its state
    in step with its ledger under concurrent requests. Call inside a transaction.
    """
    key = identity.subject_key(identifier)
    # INSERT ... ON CONFLICT DO NOTHING: concurrent first writers do not fail.
    Subject.objects.bulk_create(
        [
            Subject(
                namespace=namespace,
                key=key,
                key_version=settings.SUBJECT_HASH_KEY_VERSION,
                identifier_encrypted=identity.encrypt_identifier(identifier, key=key),
            )
        ],
        ignore_conflicts=True,
    )
    subject = Subject.objects.select_for_update().get(namespace=namespace, key=key)
    if subject.identifier_encrypted is None:
        # Erased earlier: a new grant starts a new history under a fresh ciphertext.
        subject.identifier_encrypted = identity.encrypt_identifier(identifier, key=key)
        subject.save(update_fields=["identifier_encrypted"])
    return subject


@transaction.atomic
def subject_mark_erased(*, subject: Subject, now: datetime | None = None) -> Subject:
    """Destroys the encrypted identifier and records when the subject was erased."""
    locked = Subject.objects.select_for_update().get(pk=subject.pk)
    locked.identifier_encrypted = None
    locked.erased_at = now or timezone.now()
    locked.save(update_fields=["identifier_encrypted", "erased_at"])
    return locked


# --- the ledger -------------------------------------------------------------------------


def effective_status(state: ConsentState, now: datetime) -> str:
    """A grant past its expiry reads as expired at once, before any task records it."""
    if state.status == Action.GRANTED and state.expires_at is not None and state.expires_at <= now:
        return Action.EXPIRED
    return state.status


def _context_build(
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
    digest = ledger.context_digest(
        receipt_id=str(receipt_id),
        ip_hash=row.ip_hash,
        user_agent_hash=row.user_agent_hash,
        page=row.page,
        locale=row.locale,
        jurisdiction=row.jurisdiction,
    )
    return row, digest


@dataclass(frozen=True)
class _Entry:
    purpose: Purpose
    action: str
    notice_version: int
    expires_at: datetime | None


def event_build(
    *,
    subject: Subject,
    entry: _Entry,
    effective_at: datetime,
    recorded_at: datetime,
    source: str,
    indication_method: str,
    given_by: str,
    actor: Actor,
    receipt_id: uuid.UUID,
    context_digest: str,
    language: str,
) -> ConsentEvent:
    """The unsaved next event of a locked subject's chain; moves the subject's chain head
    in memory (the caller saves both)."""
    seq = subject.last_seq + 1
    event = ConsentEvent(
        id=uuid.uuid4(),
        subject=subject,
        seq=seq,
        purpose=entry.purpose,
        notice_version=entry.notice_version,
        language=language,
        action=entry.action,
        effective_at=effective_at,
        recorded_at=recorded_at,
        expires_at=entry.expires_at,
        source=source,
        indication_method=indication_method,
        given_by=given_by,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        receipt_id=receipt_id,
        context_digest=context_digest,
        prev_hash=subject.chain_head,
    )
    event.hash = ledger.event_hash_of(
        vars(event), subject_key=subject.key, purpose_key=entry.purpose.key
    )
    subject.last_seq = seq
    subject.chain_head = event.hash
    return event


def _state_of(event: ConsentEvent) -> ConsentState:
    """The current state an event leaves its purpose in."""
    return ConsentState(
        subject_id=event.subject_id,
        purpose_id=event.purpose_id,
        status=event.action,
        notice_version=event.notice_version,
        since=event.effective_at,
        expires_at=event.expires_at,
        event_id=event.id,
        gpc=event.source == Source.GPC,
    )


_STATE_UPDATE_FIELDS = ["status", "notice_version", "since", "expires_at", "event_id", "gpc"]


def _states_save(states: Sequence[ConsentState]) -> None:
    # One INSERT ... ON CONFLICT DO UPDATE instead of update_or_create's select, savepoints
    # and insert: the subject's row lock already orders writers, this only saves round trips.
    ConsentState.objects.bulk_create(
        states,
        update_conflicts=True,
        unique_fields=["purpose", "subject"],
        update_fields=[*_STATE_UPDATE_FIELDS, "updated_at"],
    )


def event_payload(event: ConsentEvent) -> dict[str, Any]:
    """What subscribers learn of an event (the identifier is added at delivery)."""
    return {
        "event_id": str(event.id),
        "purpose": event.purpose.key,
        "action": event.action,
        "notice_version": event.notice_version,
        "effective_at": event.effective_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "expires_at": event.expires_at.isoformat() if event.expires_at else None,
        "source": event.source,
        "receipt_id": str(event.receipt_id),
    }


_PURPOSE_COLUMNS = ["id", "key", "consent_ttl", "gpc_opt_out"]
_PURPOSES = Memo()
_PurposeRow = tuple[list[Any], int | None]


def _purposes_by_key(keys: Sequence[str], now: datetime | None = None) -> dict[str, Purpose]:
    """The active purposes named, each annotated with its current notice version at `now`
    (`current_notice`, None when it has none): this is the write path, so the read is
    memoised for a second (governance.memo), and never past a notice's publication."""
    now = now or timezone.now()
    names, version = tuple(sorted(set(keys))), memos_version()
    rows: list[_PurposeRow] | None = _PURPOSES.get(names, at=now.timestamp())
    if rows is None:
        rows, next_publication = _purpose_rows(names, now)
        if len(rows) == len(names):  # an unknown purpose is not memoised
            _PURPOSES.put(names, rows, version=version, at=now.timestamp(), until=next_publication)
    found: dict[str, Purpose] = {}
    for values, notice in rows:
        purpose = Purpose.from_db("default", _PURPOSE_COLUMNS, values)
        purpose.current_notice = notice  # type: ignore[attr-defined]
        found[purpose.key] = purpose
    unknown = sorted(set(keys) - set(found))
    if unknown:
        raise UnknownPurpose(
            f"Unknown or inactive purpose: {', '.join(unknown)}.", detail={"unknown": unknown}
        )
    return found


def _purpose_rows(names: Sequence[str], now: datetime) -> tuple[list[_PurposeRow], float | None]:
    """The purposes' columns and current notice versions, and when the next notice version
    of any of them is published (a Unix time; None when none is scheduled)."""
    # Plain SQL: this runs on every consent write, and the ORM's query compilation would
    # cost more than the query. Columns the write path does not use stay deferred.
    columns = ", ".join(f"p.{c}" for c in _PURPOSE_COLUMNS)
    notices = (
        "(SELECT MAX(n.version) FROM consent_noticeversion n"
        " WHERE n.purpose_id = p.id AND n.published_at <= %s) AS current_notice,"
        " (SELECT MIN(n.published_at) FROM consent_noticeversion n"
        " WHERE n.purpose_id = p.id AND n.published_at > %s) AS next_notice_at"
    )
    rows: list[_PurposeRow] = []
    upcoming: list[float] = []
    if connection.vendor == "postgresql":
        with db.server_cursor() as cursor:
            cursor.execute(
                f"SELECT {columns}, {notices} FROM consent_purpose p"  # noqa: S608
                " WHERE p.active AND p.key = ANY(%s)",
                [now, now, list(names)],
                prepare=True,
            )
            for *values, notice, next_at in cursor.fetchall():
                rows.append((values, notice))
                upcoming += [next_at.timestamp()] if next_at else []
    else:
        placeholders = ", ".join(["%s"] * len(names))
        sql = (  # only placeholders are formatted in, the keys are parameters
            f"SELECT {columns}, {notices} FROM consent_purpose p"  # noqa: S608
            f" WHERE p.active AND p.key IN ({placeholders})"
        )
        for p in Purpose.objects.raw(sql, [now, now, *names]):
            rows.append(([getattr(p, c) for c in _PURPOSE_COLUMNS], p.current_notice))  # type: ignore[attr-defined]
            next_at = unix_time(getattr(p, "next_notice_at", None))
            upcoming += [next_at] if next_at is not None else []
    return rows, min(upcoming) if upcoming else None


def _language(context: ContextInput | None) -> str:
    locale = (context.locale if context else "") or ""
    return locale.split("-")[0].split("_")[0].lower()[:16] or "en"


def _write(
    *,
    identifier: str,
    namespace: str,
    plan: Any,
    source: str,
    indication_method: str,
    given_by: str,
    actor: Actor,
    context: ContextInput | None,
    now: datetime,
) -> RecordResult:
    """Locks the subject, lets `plan` choose the entries from the current states, appends
    the events with their states, proof context, outbox and audit rows in one transaction."""
    with transaction.atomic():
        subject, states = _subject_lock_with_states(identifier=identifier, namespace=namespace)
        entries: list[_Entry] = plan(states)
        if not entries:
            return RecordResult(receipt_id=None, subject=subject, recorded_at=now)
        receipt_id = uuid.uuid4()
        context_row, digest = _context_build(
            receipt_id=receipt_id, context=context or ContextInput(), now=now
        )
        language = _language(context)
        events = [
            event_build(
                subject=subject,
                entry=entry,
                effective_at=now,
                recorded_at=now,
                source=source,
                indication_method=indication_method,
                given_by=given_by,
                actor=actor,
                receipt_id=receipt_id,
                context_digest=digest,
                language=language,
            )
            for entry in entries
        ]
        announcements = [
            outbox_build(
                event_type=f"consent.{event.action}",
                payload=event_payload(event),
                subject_key=subject.key,
                subject_identifier=identifier,
            )
            for event in events
        ]
        audit = audit_build(
            actor=actor,
            action="consent.record",
            target_type="receipt",
            target_id=str(receipt_id),
            ip=(context.ip if context else ""),
            detail={
                "subject_key": subject.key,
                "source": source,
                "events": [[e.purpose.key, e.action] for e in events],
            },
        )
        ledger_append(
            subject=subject,
            events=events,
            announcements=announcements,
            context_row=context_row,
            audit=audit,
        )
        return RecordResult(receipt_id=receipt_id, subject=subject, recorded_at=now, events=events)


# --- the write path's statements ----------------------------------------------------------
# On PostgreSQL a consent write is four statements inside its transaction: lock (or
# create) the subject, read its states, write every row in one statement (ledger_append),
# commit. On SQLite, the embedded default, the ORM does the same one row at a time.

_SUBJECT_COLUMNS = (
    "id",
    "key_version",
    "identifier_encrypted",
    "created_at",
    "erased_at",
    "last_seq",
    "chain_head",
)
_STATE_COLUMNS = (
    "id",
    "purpose_id",
    "status",
    "notice_version",
    "since",
    "expires_at",
    "event_id",
    "gpc",
    "updated_at",
)

# Column names from the tuples above; every value is a parameter.
_SUBJECT_LOCK_SQL = f"""
INSERT INTO consent_subject AS s
    (namespace, key, key_version, identifier_encrypted, created_at, last_seq, chain_head)
VALUES (%s, %s, %s, %s, %s, 0, '')
ON CONFLICT (namespace, key) DO UPDATE
    SET identifier_encrypted = COALESCE(s.identifier_encrypted, EXCLUDED.identifier_encrypted)
RETURNING {", ".join(_SUBJECT_COLUMNS)}
"""  # noqa: S608
_STATE_LIST = ", ".join(_STATE_COLUMNS)
_STATES_SQL = f"SELECT {_STATE_LIST} FROM consent_consentstate WHERE subject_id = %s"  # noqa: S608


def _subject_lock_with_states(
    *, identifier: str, namespace: str
) -> tuple[Subject, dict[int, ConsentState]]:
    """subject_lock, then the subject's current states by purpose id."""
    if connection.vendor != "postgresql":
        subject = subject_lock(identifier=identifier, namespace=namespace)
        return subject, {s.purpose_id: s for s in ConsentState.objects.filter(subject=subject)}
    key = identity.subject_key(identifier)
    with db.server_cursor() as cursor:
        # ON CONFLICT DO UPDATE takes the row lock whether it inserts or finds the row, and
        # gives a subject erased earlier a fresh ciphertext (a new grant starts a new history).
        cursor.execute(
            _SUBJECT_LOCK_SQL,
            [
                namespace,
                key,
                settings.SUBJECT_HASH_KEY_VERSION,
                identity.encrypt_identifier(identifier, key=key),
                timezone.now(),
            ],
            prepare=True,
        )
        found = dict(zip(_SUBJECT_COLUMNS, cursor.fetchone() or (), strict=True))
        subject = Subject(namespace=namespace, key=key, **found)
        # A fresh statement, so a fresh snapshot: it sees what earlier lock holders committed.
        cursor.execute(_STATES_SQL, [subject.pk], prepare=True)
        states = [
            ConsentState(subject_id=subject.pk, **dict(zip(_STATE_COLUMNS, r, strict=True)))
            for r in cursor.fetchall()
        ]
    return subject, {s.purpose_id: s for s in states}


def ledger_append(
    *,
    subject: Subject,
    events: Sequence[ConsentEvent],
    announcements: Sequence[OutboxEvent],
    context_row: ConsentContext | None = None,
    audit: AuditEvent | None = None,
) -> None:
    """Writes built events (event_build) with the states they leave, the subject's chain
    head, their outbox rows and, when given, the proof context and the audit row, then asks
    for a dispatch on commit. Call inside the transaction that holds the subject's lock.
    On PostgreSQL it is one statement; on SQLite the ORM, row by row."""
    states = [_state_of(event) for event in events]
    contexts = [context_row] if context_row is not None else []
    audits = [audit] if audit is not None else []
    if connection.vendor != "postgresql":
        for row in contexts:
            row.save(force_insert=True)
        ConsentEvent.objects.bulk_create(events)
        _states_save(states)
        subject.save(update_fields=["last_seq", "chain_head"])
        first = outbox_next_seq(subject.key)
        for offset, announcement in enumerate(announcements):
            announcement.seq = first + offset
        OutboxEvent.objects.bulk_create(announcements)
        for audit_row in audits:
            audit_row.save(force_insert=True)
    else:
        statement = db.Statement()
        statement.insert(contexts)
        statement.insert(events)
        statement.insert(
            states,
            on_conflict="ON CONFLICT (purpose_id, subject_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in [*_STATE_UPDATE_FIELDS, "updated_at"]),
        )
        statement.raw(
            "UPDATE consent_subject SET last_seq = %s, chain_head = %s WHERE id = %s",
            [subject.last_seq, subject.chain_head, subject.pk],
        )
        statement.insert(announcements, expressions={"seq": OUTBOX_NEXT_SEQ_SQL})
        statement.insert(audits)
        statement.execute()
    if announcements:
        outbox_dispatch_on_commit()


def consent_record(
    *,
    subject_id: str,
    decisions: Sequence[DecisionInput],
    actor: Actor,
    source: str = Source.API,
    indication_method: str = IndicationMethod.API,
    given_by: str = GivenBy.SUBJECT,
    subject_age: int | None = None,
    context: ContextInput | None = None,
    namespace: str = Subject.Namespace.ACCOUNT,
    now: datetime | None = None,
) -> RecordResult:
    """Records one decision per purpose, all or nothing, under one receipt.

    `granted: false` withdraws a standing grant and otherwise refuses; a GPC source always
    refuses, whatever the state, since GPC is an opt-out and never a withdrawal.
    """
    identity.validate_identifier(subject_id)
    if not decisions:
        raise InvalidRequest("decisions must not be empty.", detail={"field": "decisions"})
    keys = [d.purpose for d in decisions]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise DuplicatePurpose(detail={"duplicated": duplicated})
    purposes = _purposes_by_key(keys)
    current = {
        p.pk: p.current_notice  # type: ignore[attr-defined]
        for p in purposes.values()
        if p.current_notice is not None  # type: ignore[attr-defined]
    }
    for d in decisions:
        purpose = purposes[d.purpose]
        if purpose.pk not in current:
            raise PurposeWithoutNotice(detail={"purpose": d.purpose})
        if d.notice_version is not None and d.notice_version != current[purpose.pk]:
            raise NoticeVersionSuperseded(
                detail={
                    "purpose": d.purpose,
                    "notice_version": d.notice_version,
                    "current_notice_version": current[purpose.pk],
                }
            )
    grants = [d for d in decisions if d.granted and source != Source.GPC]
    if grants and indication_method not in AFFIRMATIVE_METHODS:
        raise NonAffirmativeIndication(detail={"indication_method": indication_method})
    if (
        grants
        and subject_age is not None
        and subject_age < settings.CHILD_CONSENT_AGE
        and given_by != GivenBy.GUARDIAN
    ):
        raise GuardianRequired(detail={"child_consent_age": settings.CHILD_CONSENT_AGE})
    moment = now or timezone.now()

    def plan(states: dict[int, ConsentState]) -> list[_Entry]:
        entries = []
        for d in decisions:
            purpose = purposes[d.purpose]
            version = current[purpose.pk]
            state = states.get(purpose.pk)
            if d.granted and source != Source.GPC:
                ttl = purpose.consent_ttl
                entries.append(
                    _Entry(purpose, Action.GRANTED, version, moment + ttl if ttl else None)
                )
            elif (
                source != Source.GPC
                and state is not None
                and effective_status(state, moment) == Action.GRANTED
            ):
                entries.append(_Entry(purpose, Action.WITHDRAWN, version, None))
            else:
                entries.append(_Entry(purpose, Action.REFUSED, version, None))
        return entries

    return _write(
        identifier=subject_id,
        namespace=namespace,
        plan=plan,
        source=source,
        indication_method=indication_method,
        given_by=given_by,
        actor=actor,
        context=context,
        now=moment,
    )


def consent_withdraw(
    *,
    subject_id: str,
    actor: Actor,
    purposes: Sequence[str] | None = None,
    source: str = Source.API,
    indication_method: str = IndicationMethod.API,
    context: ContextInput | None = None,
    namespace: str = Subject.Namespace.ACCOUNT,
    now: datetime | None = None,
) -> RecordResult:
    """Withdraws standing grants: the named purposes, or every granted one when none named.

    A named purpose that is not granted is refused instead, so the choice is still on record.
    """
    identity.validate_identifier(subject_id)
    moment = now or timezone.now()
    if (
        purposes is None
        and not Subject.objects.filter(
            namespace=namespace, key=identity.subject_key(subject_id)
        ).exists()
    ):
        return RecordResult(receipt_id=None, subject=None, recorded_at=moment)
    named: dict[str, Purpose] = {}
    if purposes is not None:
        if not purposes:
            raise InvalidRequest("purposes must not be empty when given.")
        duplicated = sorted({k for k in purposes if list(purposes).count(k) > 1})
        if duplicated:
            raise DuplicatePurpose(detail={"duplicated": duplicated})
        named = _purposes_by_key(list(purposes))
    current = current_notice_versions([p.pk for p in Purpose.objects.filter(active=True)])

    def plan(states: dict[int, ConsentState]) -> list[_Entry]:
        if purposes is None:
            granted = [s for s in states.values() if effective_status(s, moment) == Action.GRANTED]
            by_id = Purpose.objects.in_bulk([s.purpose_id for s in granted])
            return [
                _Entry(by_id[s.purpose_id], Action.WITHDRAWN, s.notice_version, None)
                for s in sorted(granted, key=lambda s: by_id[s.purpose_id].key)
            ]
        entries = []
        for key in purposes:
            purpose = named[key]
            state = states.get(purpose.pk)
            if state is not None and effective_status(state, moment) == Action.GRANTED:
                entries.append(_Entry(purpose, Action.WITHDRAWN, state.notice_version, None))
            else:
                entries.append(_Entry(purpose, Action.REFUSED, current.get(purpose.pk, 0), None))
        return entries

    return _write(
        identifier=subject_id,
        namespace=namespace,
        plan=plan,
        source=source,
        indication_method=indication_method,
        given_by=GivenBy.SUBJECT,
        actor=actor,
        context=context,
        now=moment,
    )


def consent_expire_due(*, now: datetime | None = None, batch: int = 500) -> int:
    """Appends an `expired` event for each grant past its expires_at (effective then,
    recorded now), with its state, outbox event and audit row, one subject per transaction
    under the subject's lock. Returns how many consents it expired; safe to run again."""
    moment = now or timezone.now()
    due = list(
        ConsentState.objects.filter(status=Action.GRANTED, expires_at__lte=moment)
        .order_by("expires_at", "pk")
        .values_list("subject_id", "purpose_id")[:batch]
    )
    actor = Actor.system("consent expiry")
    expired = 0
    for subject_id, purpose_id in due:
        with transaction.atomic():
            subject = Subject.objects.select_for_update().get(pk=subject_id)
            state = (
                ConsentState.objects.select_related("purpose")
                .filter(subject=subject, purpose_id=purpose_id)
                .first()
            )
            # Checked again under the lock: a new grant or a withdrawal may have come first.
            if (
                state is None
                or state.status != Action.GRANTED
                or state.expires_at is None
                or state.expires_at > moment
            ):
                continue
            receipt_id = uuid.uuid4()
            event = event_build(
                subject=subject,
                entry=_Entry(state.purpose, Action.EXPIRED, state.notice_version, None),
                effective_at=state.expires_at,
                recorded_at=moment,
                source=Source.SYSTEM,
                indication_method=IndicationMethod.SYSTEM,
                given_by=GivenBy.SUBJECT,
                actor=actor,
                receipt_id=receipt_id,
                context_digest="",
                language="",
            )
            ledger_append(
                subject=subject,
                events=[event],
                announcements=[
                    outbox_build(
                        event_type="consent.expired",
                        payload=event_payload(event),
                        subject_key=subject.key,
                        subject_identifier=identity.decrypt_identifier(
                            subject.identifier_encrypted, key=subject.key
                        ),
                    )
                ],
                audit=audit_build(
                    actor=actor,
                    action="consent.expire",
                    target_type="receipt",
                    target_id=str(receipt_id),
                    detail={"subject_key": subject.key, "events": [[state.purpose.key, "expired"]]},
                ),
            )
            expired += 1
    return expired


__all__ = ["Actor", "ContextInput", "DecisionInput", "RecordResult"]
