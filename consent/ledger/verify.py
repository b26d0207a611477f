"""Re-computes the ledger's hash chains and names every break.

A chain starts at the genesis (seq 1, empty prev_hash) or at the subject's latest
SubjectTombstone: the first remaining event then has seq = tombstone.last_seq + 1 and
prev_hash = tombstone.final_chain_hash. The subject row's head must match the last event
(or the tombstone when no event remains), so a deleted tail is found too.

Each run of `verify_ledger` is audited (ledger_verification_record), so the metrics can tell
how long ago the whole ledger last verified clean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

from django.db import transaction
from django.db.models import Max

from consent.ledger import chain
from consent.models import ConsentContext, ConsentEvent, Subject, SubjectTombstone
from governance.actors import Actor
from governance.audit import audit_record
from governance.models import AuditEvent

# What the verifier reads of each event: its ids, its hash and what the hash covers.
_FIELDS = ("id", "subject_id", "purpose__key", "receipt_id", "hash", *chain.HASHED_COLUMNS)


@dataclass(frozen=True)
class ChainBreak:
    subject_id: int
    subject_key: str
    kind: str
    seq: int | None
    event_id: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"seq {self.seq} (event {self.event_id})" if self.event_id else "head"
        return f"subject {self.subject_key[:16]}… {where}: {self.kind}: {self.message}"


@dataclass
class VerifyReport:
    subjects: int = 0
    events: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


def _recompute(row: dict[str, Any], subject_key: str) -> str:
    return chain.event_hash_of(row, subject_key=subject_key, purpose_key=row["purpose__key"])


def _context_digests(receipt_ids: Iterable[Any]) -> dict[str, str]:
    digests = {}
    for c in ConsentContext.objects.filter(receipt_id__in=set(receipt_ids)):
        digests[str(c.receipt_id)] = chain.context_digest(
            receipt_id=str(c.receipt_id),
            ip_hash=c.ip_hash,
            user_agent_hash=c.user_agent_hash,
            page=c.page,
            locale=c.locale,
            jurisdiction=c.jurisdiction,
        )
    return digests


def _latest_tombstones(subjects: Iterable[Subject]) -> dict[tuple[str, str], SubjectTombstone]:
    keys = {s.key for s in subjects}
    latest: dict[tuple[str, str], SubjectTombstone] = {}
    for t in SubjectTombstone.objects.filter(subject_key__in=keys).order_by("created_at", "id"):
        latest[(t.namespace, t.subject_key)] = t
    return latest


def _verify_subject(
    subject: Subject,
    rows: list[dict[str, Any]],
    tombstone: SubjectTombstone | None,
    contexts: dict[str, str],
) -> Iterator[ChainBreak]:
    def brk(kind: str, message: str, row: dict[str, Any] | None = None) -> ChainBreak:
        return ChainBreak(
            subject_id=subject.pk,
            subject_key=subject.key,
            kind=kind,
            seq=row["seq"] if row else None,
            event_id=str(row["id"]) if row else None,
            message=message,
        )

    expected_prev, expected_seq = chain.GENESIS, 1
    if rows and (rows[0]["seq"] != 1 or rows[0]["prev_hash"] != chain.GENESIS):
        if tombstone is None:
            yield brk(
                "missing_start", "the chain does not start at seq 1 and no tombstone", rows[0]
            )
        elif (
            tombstone.final_chain_hash != rows[0]["prev_hash"]
            or tombstone.last_seq + 1 != rows[0]["seq"]
        ):
            yield brk(
                "tombstone_mismatch",
                "the first remaining event does not continue the latest tombstone",
                rows[0],
            )
        expected_prev, expected_seq = rows[0]["prev_hash"], rows[0]["seq"]
    for row in rows:
        if row["seq"] != expected_seq:
            yield brk("seq_gap", f"expected seq {expected_seq}, found {row['seq']}", row)
        if row["prev_hash"] != expected_prev:
            yield brk("broken_link", "prev_hash is not the previous event's hash", row)
        if _recompute(row, subject.key) != row["hash"]:
            yield brk("hash_mismatch", "the event's fields do not match its hash", row)
        digest = contexts.get(str(row["receipt_id"]))
        if digest is not None and digest != row["context_digest"]:
            yield brk("context_mismatch", "the proof context does not match its digest", row)
        expected_prev, expected_seq = row["hash"], row["seq"] + 1
    if rows:
        head_hash, head_seq = rows[-1]["hash"], rows[-1]["seq"]
    elif tombstone is not None:
        head_hash, head_seq = tombstone.final_chain_hash, tombstone.last_seq
    else:
        head_hash, head_seq = chain.GENESIS, 0
    if (subject.chain_head, subject.last_seq) != (head_hash, head_seq):
        yield brk(
            "head_mismatch",
            f"the subject's head is seq {subject.last_seq}, the chain ends at seq {head_seq}",
        )


def ledger_verify(*, subject_ids: Iterable[int] | None = None, batch: int = 500) -> VerifyReport:
    """Walks every chain (or the given subjects') in batches of subjects."""
    report = VerifyReport()
    subjects_qs = Subject.objects.order_by("pk")
    if subject_ids is not None:
        subjects_qs = subjects_qs.filter(pk__in=list(subject_ids))
    last_pk = 0
    while True:
        subjects = list(subjects_qs.filter(pk__gt=last_pk)[:batch])
        if not subjects:
            return report
        last_pk = subjects[-1].pk
        by_pk = {s.pk: s for s in subjects}
        rows = list(
            ConsentEvent.objects.filter(subject_id__in=by_pk)
            .order_by("subject_id", "seq")
            .values(*_FIELDS)
        )
        contexts = _context_digests(r["receipt_id"] for r in rows)
        tombstones = _latest_tombstones(subjects)
        grouped = {pk: list(g) for pk, g in groupby(rows, key=lambda r: r["subject_id"])}
        for subject in subjects:
            events = grouped.get(subject.pk, [])
            report.subjects += 1
            report.events += len(events)
            tombstone = tombstones.get((subject.namespace, subject.key))
            report.breaks.extend(_verify_subject(subject, events, tombstone, contexts))


VERIFY_ACTION = "ledger.verify"


def ledger_verification_record(*, report: VerifyReport, full: bool) -> None:
    """Audits a verification run (the metrics read its age from here): whether it walked
    every chain, how much it read and how many breaks it found."""
    with transaction.atomic():
        audit_record(
            actor=Actor.system("verify_ledger"),
            action=VERIFY_ACTION,
            target_type="ledger",
            detail={
                "full": full,
                "subjects": report.subjects,
                "events": report.events,
                "breaks": len(report.breaks),
            },
        )


def ledger_verification_last(*, now: datetime) -> tuple[float, int | None]:
    """(seconds since the last full verification that found no break, or +inf if none did;
    the breaks the last full verification found, or None if none ran)."""
    runs = AuditEvent.objects.filter(action=VERIFY_ACTION, detail__full=True)
    clean = runs.filter(detail__breaks=0).aggregate(at=Max("at"))["at"]
    last = runs.order_by("-at").values_list("detail", flat=True).first()
    age = max((now - clean).total_seconds(), 0.0) if clean is not None else math.inf
    return age, (int(last["breaks"]) if last is not None else None)
