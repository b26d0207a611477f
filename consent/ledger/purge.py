"""The one guarded path through which ledger rows may be deleted.

Used only by retention and erasure, which remove whole subject histories and leave a
SubjectTombstone. Everything else meets the trigger's refusal. Two implementations, picked
once by database: PostgreSQL's owner-owned function (the app role's only way past the
trigger) and the guard row SQLite's trigger honours.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from consent.models import (
    ConsentContext,
    ConsentEvent,
    ConsentState,
    LedgerPurgeGuard,
    Subject,
    SubjectKeyChange,
    SubjectTombstone,
)
from governance.api.common import iso
from governance.db import PerDatabase


@contextmanager
def ledger_purge_allowed(reason: str) -> Iterator[None]:
    """Inside this block, in this transaction only, the trigger lets DELETE through."""
    with transaction.atomic():
        guard = LedgerPurgeGuard.objects.create(reason=reason[:64])
        yield
        # On an error the rollback removes the guard row with everything else.
        LedgerPurgeGuard.objects.filter(pk=guard.pk).delete()


class GuardRowLedgerPurge:
    """The guard-row path: SQLite (no roles there), where the trigger honours the guard."""

    def subject_history(
        self, *, subject: Subject, reason: str, removed_elsewhere: dict[str, Any]
    ) -> SubjectTombstone:
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
                    **removed_elsewhere,
                },
                created_at=timezone.now(),
            )


class DefinerLedgerPurge:
    """PostgreSQL: ledger_purge_subject (migration 0007), owned by the migrating role and run
    with its rights, does the same in one call; the trigger lets nothing else through, so
    the app role can remove a history only whole and only leaving its tombstone."""

    def subject_history(
        self, *, subject: Subject, reason: str, removed_elsewhere: dict[str, Any]
    ) -> SubjectTombstone:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT ledger_purge_subject(%s, %s, %s::jsonb)",
                [subject.pk, reason, json.dumps(removed_elsewhere, cls=DjangoJSONEncoder)],
            )
            return SubjectTombstone.objects.get(pk=cursor.fetchone()[0])


_PURGES: PerDatabase[GuardRowLedgerPurge | DefinerLedgerPurge] = PerDatabase(
    postgresql=DefinerLedgerPurge(), portable=GuardRowLedgerPurge()
)


def subject_history_purge(
    *, subject: Subject, reason: str, removed_elsewhere: dict[str, Any] | None = None
) -> SubjectTombstone:
    """Removes a subject's whole consent history (events, states, proof context) and leaves
    its tombstone, in one transaction. The subject row stays: its chain head is the
    tombstone's final hash, so a later grant starts a new history that still verifies.

    The tombstone keeps the keys the subject had before rectifications (and until when), so
    an erasure replay finds the person under any of them; an erasure then removes the
    key-change rows, which no remaining event needs."""
    with transaction.atomic():
        tombstone = _PURGES().subject_history(
            subject=subject, reason=reason, removed_elsewhere=removed_elsewhere or {}
        )
        changes = SubjectKeyChange.objects.filter(subject_id=subject.pk).order_by("from_seq")
        former = [{"key": c.old_key, "until": iso(c.created_at)} for c in changes]
        if former:
            tombstone.former_keys = former
            tombstone.save(update_fields=["former_keys"])
        if reason == SubjectTombstone.Reason.ERASURE:
            changes.delete()
        return tombstone
