"""Every write to purposes, notices and subjects, and the consent records and withdrawals
(the API's and the banner's), which take the ledger's one write path (consent.ledger.write).
One transaction each."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from consent import identity
from consent.errors import (
    DuplicatePurpose,
    GuardianRequired,
    NonAffirmativeIndication,
    NoticeVersionSuperseded,
    PurposeWithoutNotice,
    UnknownPurpose,
)
from consent.ledger.states import effective_status
from consent.ledger.store import PURPOSE_COLUMNS, PurposeRow, SubjectRef
from consent.ledger.write import (
    ContextInput,
    Entry,
    Plan,
    RecordResult,
    Write,
    ledger_store,
    ledger_write,
)
from consent.models import (
    AFFIRMATIVE_METHODS,
    Action,
    ConsentState,
    GivenBy,
    IndicationMethod,
    NoticeText,
    NoticeVersion,
    Purpose,
    Source,
    Subject,
)
from governance.actors import Actor
from governance.errors import InvalidRequest
from governance.memo import Memo, memos_version


@dataclass(frozen=True)
class DecisionInput:
    purpose: str
    granted: bool
    notice_version: int | None = None


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


# --- subjects ---------------------------------------------------------------------------


@transaction.atomic
def subject_mark_erased(*, subject: Subject, now: datetime | None = None) -> Subject:
    """Destroys the encrypted identifier and records when the subject was erased."""
    locked = Subject.objects.select_for_update().get(pk=subject.pk)
    locked.identifier_encrypted = None
    locked.erased_at = now or timezone.now()
    locked.save(update_fields=["identifier_encrypted", "erased_at"])
    return locked


# --- the write path's purpose read ------------------------------------------------------

_PURPOSES = Memo()


def _purposes_by_key(keys: Sequence[str], now: datetime | None = None) -> dict[str, Purpose]:
    """The active purposes named, each annotated with its current notice version at `now`
    (`current_notice`, None when it has none): this is the write path, so the read is
    memoised for a second (governance.memo), and never past a notice's publication."""
    now = now or timezone.now()
    names, version = tuple(sorted(set(keys))), memos_version()
    rows: list[PurposeRow] | None = _PURPOSES.get(names, at=now.timestamp())
    if rows is None:
        rows, next_publication = ledger_store().purpose_rows(names, now)
        if len(rows) == len(names):  # an unknown purpose is not memoised
            _PURPOSES.put(names, rows, version=version, at=now.timestamp(), until=next_publication)
    found: dict[str, Purpose] = {}
    for values, notice in rows:
        purpose = Purpose.from_db("default", PURPOSE_COLUMNS, values)
        purpose.current_notice = notice  # type: ignore[attr-defined]
        found[purpose.key] = purpose
    unknown = sorted(set(keys) - set(found))
    if unknown:
        raise UnknownPurpose(
            f"Unknown or inactive purpose: {', '.join(unknown)}.", detail={"unknown": unknown}
        )
    return found


# --- consent records and withdrawals ----------------------------------------------------


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

    def plan(states: Mapping[int, ConsentState]) -> list[Entry]:
        entries = []
        for d in decisions:
            purpose = purposes[d.purpose]
            version = current[purpose.pk]
            state = states.get(purpose.pk)
            if d.granted and source != Source.GPC:
                ttl = purpose.consent_ttl
                entries.append(
                    Entry(purpose, Action.GRANTED, version, moment + ttl if ttl else None)
                )
            elif (
                source != Source.GPC
                and state is not None
                and effective_status(state, moment) == Action.GRANTED
            ):
                entries.append(Entry(purpose, Action.WITHDRAWN, version, None))
            else:
                entries.append(Entry(purpose, Action.REFUSED, version, None))
        return entries

    return _write(
        subject_id, namespace, plan, moment, actor, source, indication_method, given_by, context
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

    def plan(states: Mapping[int, ConsentState]) -> list[Entry]:
        if purposes is None:
            granted = [s for s in states.values() if effective_status(s, moment) == Action.GRANTED]
            by_id = Purpose.objects.in_bulk([s.purpose_id for s in granted])
            return [
                Entry(by_id[s.purpose_id], Action.WITHDRAWN, s.notice_version, None)
                for s in sorted(granted, key=lambda s: by_id[s.purpose_id].key)
            ]
        entries = []
        for key in purposes:
            purpose = named[key]
            state = states.get(purpose.pk)
            if state is not None and effective_status(state, moment) == Action.GRANTED:
                entries.append(Entry(purpose, Action.WITHDRAWN, state.notice_version, None))
            else:
                version = purpose.current_notice or 0  # type: ignore[attr-defined]
                entries.append(Entry(purpose, Action.REFUSED, version, None))
        return entries

    given_by = GivenBy.SUBJECT  # a withdrawal is always the person's own
    return _write(
        subject_id, namespace, plan, moment, actor, source, indication_method, given_by, context
    )


def _write(
    subject_id: str,
    namespace: str,
    plan: Plan,
    now: datetime,
    actor: Actor,
    source: str,
    indication_method: str,
    given_by: str,
    context: ContextInput | None,
) -> RecordResult:
    """An API or banner write: under one receipt, with its proof context and audit row."""
    return ledger_write(
        subject=SubjectRef.of(subject_id, namespace),
        plan=plan,
        write=Write(
            actor=actor,
            source=source,
            indication_method=indication_method,
            given_by=given_by,
            context=context or ContextInput(),
            audit_detail={"source": source},
        ),
        now=now,
    )


__all__ = ["Actor", "ContextInput", "DecisionInput", "RecordResult"]
