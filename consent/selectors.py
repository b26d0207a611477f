"""Reads of subjects, their states, history and receipts."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

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
from consent.notices import current_notice_versions, with_notice_versions
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


def consent_states_of(
    *, identifier: str, namespace: str = Subject.Namespace.ACCOUNT, now: datetime | None = None
) -> list[tuple[ConsentState, str]]:
    """A subject's current state per purpose, with expiry applied as of now, each annotated
    with its purpose's `current_notice` and `material_notice` (notices.with_notice_versions):
    one query, none for an unknown subject's empty answer."""
    identity.validate_identifier(identifier)
    moment = now or timezone.now()
    states = ConsentState.objects.filter(
        subject__namespace=namespace, subject__key=identity.subject_key(identifier)
    ).select_related("purpose")
    states = with_notice_versions(states, now=moment).order_by("purpose__key")
    return [(s, effective_status(s, moment)) for s in states]


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
        ConsentEvent.objects.filter(receipt_id=receipt_id)
        .select_related("purpose", "subject")
        .order_by("seq")
    )
    context = ConsentContext.objects.filter(receipt_id=receipt_id).first()
    return events, context
