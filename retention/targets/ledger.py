"""Whole consent histories: a subject's ledger goes at once, through the ledger's own purge
path, which leaves the tombstone the chain check accepts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from consent.ledger.purge import subject_history_purge
from consent.models import Action, ConsentEvent, ConsentState, Subject, SubjectTombstone
from retention.targets.base import Progress, Sweep, Tally
from retention.targets.rows import ModelRows


def ledger_candidates(*, cutoff: datetime, now: datetime) -> QuerySet[Subject]:
    """Subjects whose every consent is withdrawn, refused or expired, last event before cutoff."""
    live = ConsentState.objects.filter(subject=OuterRef("pk"), status=Action.GRANTED).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    recent = ConsentEvent.objects.filter(subject=OuterRef("pk"), recorded_at__gte=cutoff)
    any_event = ConsentEvent.objects.filter(subject=OuterRef("pk"))
    return (
        Subject.objects.filter(Exists(any_event))
        .exclude(Exists(live))
        .exclude(Exists(recent))
        .order_by("pk")
    )


@dataclass(frozen=True, kw_only=True)
class SubjectHistory(ModelRows):
    """The consent ledger. Its rows are never purged one by one (the chain would break): a
    subject's whole history goes once nothing of it is live or recent."""

    takes_condition: ClassVar[bool] = False
    keeps_proof_of_consent: ClassVar[bool] = True
    default_batch_size: ClassVar[int] = 1000

    def count(self, sweep: Sweep) -> Tally:
        candidates = ledger_candidates(cutoff=sweep.cutoff, now=sweep.now)
        return Tally(
            examined=candidates.count(),
            held=candidates.filter(key__in=sweep.held_keys).count(),
        )

    def purge(self, sweep: Sweep, progress: Progress) -> Tally:
        tally = self.count(sweep)
        candidates = ledger_candidates(cutoff=sweep.cutoff, now=sweep.now).exclude(
            key__in=sweep.held_keys
        )
        removed = 0
        last_pk = 0
        while True:
            pks = list(
                candidates.filter(pk__gt=last_pk).values_list("pk", flat=True)[: sweep.batch_size]
            )
            if not pks:
                return Tally(examined=tally.examined, held=tally.held, removed=removed)
            chunk = sum(self._subject_purge(pk, sweep) for pk in pks)
            removed += chunk
            last_pk = pks[-1]
            progress.chunk(chunk)

    @staticmethod
    def _subject_purge(pk: int, sweep: Sweep) -> int:
        with transaction.atomic():
            subject = Subject.objects.select_for_update().get(pk=pk)
            # Checked again under the subject's lock: a grant may have arrived meanwhile.
            if not ledger_candidates(cutoff=sweep.cutoff, now=sweep.now).filter(pk=pk).exists():
                return 0
            tombstone = subject_history_purge(
                subject=subject, reason=SubjectTombstone.Reason.EXPIRED_HISTORY
            )
            return int(tombstone.removed.get("consent_events", 0))
