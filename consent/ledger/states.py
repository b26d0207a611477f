"""Current consent state: the row an event leaves its purpose in, and how a state reads at
an instant. Pure; shared by the write path and the reads (selectors, banner)."""

from __future__ import annotations

from datetime import datetime

from consent.models import Action, ConsentEvent, ConsentState, Source
from governance.db import unsaved


def effective_status(state: ConsentState, now: datetime) -> str:
    """A grant past its expiry reads as expired at once, before any task records it."""
    if state.status == Action.GRANTED and state.expires_at is not None and state.expires_at <= now:
        return Action.EXPIRED
    return state.status


def state_of(event: ConsentEvent) -> ConsentState:
    """The current state a consent event leaves its purpose in."""
    return unsaved(
        ConsentState,
        {},
        id=None,
        subject_id=event.subject_id,
        purpose_id=event.decided_purpose.id,
        status=event.action,
        notice_version=event.notice_version,
        since=event.effective_at,
        expires_at=event.expires_at,
        event_id=event.id,
        gpc=event.source == Source.GPC,
        updated_at=None,  # set on insert (auto_now)
    )
