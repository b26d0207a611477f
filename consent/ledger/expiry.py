"""Consent expiry: grants past their `expires_at` get an `expired` event on the ledger (the
checks already deny them from that instant; this puts it on record and tells subscribers)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.utils import timezone

from consent.ledger.store import SubjectRef
from consent.ledger.write import Entry, Write, ledger_write
from consent.models import Action, ConsentState, GivenBy, IndicationMethod, Purpose, Source
from governance.actors import Actor


def consent_expire_due(*, now: datetime | None = None, batch: int = 500) -> int:
    """Appends an `expired` event for each grant past its expires_at (effective then,
    recorded now), with its state, outbox event and audit row, one subject per transaction
    under the subject's lock. Returns how many consents it expired; safe to run again."""
    moment = now or timezone.now()
    due = list(
        ConsentState.objects.filter(status=Action.GRANTED, expires_at__lte=moment)
        .order_by("expires_at", "pk")
        .select_related("subject", "purpose")[:batch]
    )
    write = Write(
        actor=Actor.system("consent expiry"),
        source=Source.SYSTEM,
        indication_method=IndicationMethod.SYSTEM,
        given_by=GivenBy.SUBJECT,
        audit_action="consent.expire",
    )
    expired = 0
    for due_state in due:
        purpose = due_state.purpose

        def plan(states: Mapping[int, ConsentState], purpose: Purpose = purpose) -> list[Entry]:
            state = states.get(purpose.pk)
            # Checked again under the lock: a new grant or a withdrawal may have come first.
            if (
                state is None
                or state.status != Action.GRANTED
                or state.expires_at is None
                or state.expires_at > moment
            ):
                return []
            return [
                Entry(
                    purpose,
                    Action.EXPIRED,
                    state.notice_version,
                    effective_at=state.expires_at,
                )
            ]

        subject = SubjectRef(namespace=due_state.subject.namespace, key=due_state.subject.key)
        result = ledger_write(subject=subject, plan=plan, write=write, now=moment)
        expired += len(result.events)
    return expired
