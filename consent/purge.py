"""The one guarded path through which ledger rows may be deleted.

Used only by retention and erasure, which remove whole subject histories and leave a
SubjectTombstone. Everything else meets the trigger's refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils import timezone

from consent.models import (
    ConsentContext,
    ConsentEvent,
    ConsentState,
    LedgerPurgeGuard,
    Subject,
    SubjectTombstone,
)


@contextmanager
def ledger_purge_allowed(reason: str) -> Iterator[None]:
    """Inside this block, in this transaction only, the trigger lets DELETE through."""
    with transaction.atomic():
        guard = LedgerPurgeGuard.objects.create(reason=reason[:64])
        yield
        # On an error the rollback removes the guard row with everything else.
        LedgerPurgeGuard.objects.filter(pk=guard.pk).delete()


def subject_history_purge(
    *, subject: Subject, reason: str, removed_elsewhere: dict[str, Any] | None = None
) -> SubjectTombstone:
    """Removes a subject's whole consent history (events, states, proof context) and leaves
    its tombstone, in one transaction. The subject row stays: its chain head is the
    tombstone's final hash, so a later grant starts a new history that still verifies."""
    with transaction.atomic():
        locked = Subject.objects.select_for_update().get(pk=subject.pk)
        receipts = list(
            ConsentEvent.objects.filter(subject=locked).values_list("receipt_id", flat=True)
        )
        with ledger_purge_allowed(reason):
            events_removed, _ = ConsentEvent.objects.filter(subject=locked).delete()
        states_removed, _ = ConsentState.objects.filter(subject=locked).delete()
        contexts_removed, _ = ConsentContext.objects.filter(receipt_id__in=receipts).delete()
        return SubjectTombstone.objects.create(
            subject_key=locked.key,
            key_version=locked.key_version,
            namespace=locked.namespace,
            final_chain_hash=locked.chain_head,
            last_seq=locked.last_seq,
            reason=reason,
            removed={
                "consent_events": events_removed,
                "consent_states": states_removed,
                "consent_contexts": contexts_removed,
                **(removed_elsewhere or {}),
            },
            created_at=timezone.now(),
        )
