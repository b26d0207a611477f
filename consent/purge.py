"""The one guarded path through which ledger rows may be deleted.

Used only by retention and erasure, which remove whole subject histories (and, from the
trust work on, leave a tombstone). Everything else meets the trigger's refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

from consent.models import LedgerPurgeGuard


@contextmanager
def ledger_purge_allowed(reason: str) -> Iterator[None]:
    """Inside this block, in this transaction only, the trigger lets DELETE through."""
    with transaction.atomic():
        guard = LedgerPurgeGuard.objects.create(reason=reason[:64])
        yield
        # On an error the rollback removes the guard row with everything else.
        LedgerPurgeGuard.objects.filter(pk=guard.pk).delete()
