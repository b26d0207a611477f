"""Reads of subjects, their states, history and receipts."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import NamedTuple

from django.db.models import QuerySet
from django.utils import timezone

from consent import identity
from consent.ledger.states import effective_status
from consent.models import (
    ConsentContext,
    ConsentEvent,
    ConsentState,
    Purpose,
    Subject,
)
from consent.notices import (
    CURRENT_NOTICE_SQL,
    MATERIAL_NOTICE_SQL,
    current_notice_versions,
    with_notice_versions,
)
from governance import db
from governance.db import PerDatabase
from governance.errors import InvalidRequest


def subject_find(*, identifier: str, namespace: str = Subject.Namespace.ACCOUNT) -> Subject | None:
    identity.validate_identifier(identifier)
    return Subject.objects.filter(namespace=namespace, key=identity.subject_key(identifier)).first()


def subject_identifier(subject: Subject) -> str | None:
    return identity.decrypt_identifier(subject.identifier_encrypted, key=subject.key)


def purpose_list_active() -> list[tuple[Purpose, int | None]]:
    purposes = list(Purpose.objects.filter(active=True).order_by("key"))
    versions = current_notice_versions([p.pk for p in purposes])
    return [(p, versions.get(p.pk)) for p in purposes]


class SubjectConsent(NamedTuple):
    """A subject's standing for one purpose, as GET /subjects/{id}/consents shows it."""

    purpose: str  # the purpose's key
    status: str  # effective: a grant past its expiry reads as expired
    notice_version: int
    since: datetime
    expires_at: datetime | None
    current_notice: int | None  # None: no version published (yet)
    material_notice: int  # 0: none


def consent_states_of(
    *, identifier: str, namespace: str = Subject.Namespace.ACCOUNT, now: datetime | None = None
) -> list[SubjectConsent]:
    """A subject's current state per purpose, by purpose key, with expiry applied as of now
    and its purpose's current and latest material notice versions: one query (on
    PostgreSQL one prepared statement: the subject's consents page is read on every visit
    of a person's privacy page)."""
    identity.validate_identifier(identifier)
    moment = now or timezone.now()
    return _STATES_OF()(namespace, identity.subject_key(identifier), moment)


def _states_of_orm(namespace: str, key: str, moment: datetime) -> list[SubjectConsent]:
    states = ConsentState.objects.filter(subject__namespace=namespace, subject__key=key)
    states = with_notice_versions(states.select_related("purpose"), now=moment)
    return [
        SubjectConsent(
            s.purpose.key,
            effective_status(s, moment),
            s.notice_version,
            s.since,
            s.expires_at,
            s.current_notice,  # type: ignore[attr-defined]
            s.material_notice,  # type: ignore[attr-defined]
        )
        for s in states.order_by("purpose__key")
    ]


# The same read as one fixed statement (notices.py's SQL for the notice versions).
_STATES_OF_SQL = f"""
SELECT p.key, cs.status, cs.notice_version, cs.since, cs.expires_at,
       {CURRENT_NOTICE_SQL.format(alias="p")},
       COALESCE({MATERIAL_NOTICE_SQL.format(alias="p")}, 0)
FROM consent_subject s
JOIN consent_consentstate cs ON cs.subject_id = s.id
JOIN consent_purpose p ON p.id = cs.purpose_id
WHERE s.namespace = %s AND s.key = %s
ORDER BY p.key
"""  # noqa: S608  (constants only; the values are bound parameters)


def _states_of_pg(namespace: str, key: str, moment: datetime) -> list[SubjectConsent]:
    # Prepared once per connection: the ORM's query building and PostgreSQL's planning
    # each cost several times the statement's execution here.
    with db.server_cursor() as cursor:
        cursor.execute(_STATES_OF_SQL, [moment, moment, namespace, key], prepare=True)
        rows = cursor.fetchall()
    return [
        SubjectConsent(
            purpose,
            effective_status(ConsentState(status=status, expires_at=expires_at), moment),
            version,
            since,
            expires_at,
            current,
            material,
        )
        for purpose, status, version, since, expires_at, current, material in rows
    ]


_STATES_OF = PerDatabase(postgresql=_states_of_pg, portable=_states_of_orm)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "seq":
            raise ValueError(raw)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("Malformed cursor.", detail={"field": "cursor"}) from exc


def subject_history(
    *, subject: Subject | None, cursor: str | None, limit: int
) -> tuple[list[ConsentEvent], str | None]:
    """A page of events, newest first, and the cursor of the next page (None at the end)."""
    if subject is None:
        if cursor:
            _decode_cursor(cursor)
        return [], None
    events: QuerySet[ConsentEvent] = ConsentEvent.objects.filter(subject=subject).select_related(
        "purpose"
    )
    if cursor:
        events = events.filter(seq__lt=_decode_cursor(cursor))
    page = list(events.order_by("-seq")[: limit + 1])
    next_cursor = _encode_cursor(page[limit - 1].seq) if len(page) > limit else None
    return page[:limit], next_cursor


def receipt_get(*, receipt_id: uuid.UUID) -> tuple[list[ConsentEvent], ConsentContext | None]:
    events = list(
        # A `rectified` event's receipt id is no consent receipt.
        ConsentEvent.objects.filter(receipt_id=receipt_id, purpose__isnull=False)
        .select_related("purpose", "subject")
        .order_by("seq")
    )
    context = ConsentContext.objects.filter(receipt_id=receipt_id).first()
    return events, context
