"""Re-computes the ledger's hash chains and names every break.

A chain starts at the genesis (seq 1, empty prev_hash) or at the subject's latest
SubjectTombstone: the first remaining event then has seq = tombstone.last_seq + 1 and
prev_hash = tombstone.final_chain_hash. The subject row's head must match the last event
(or the tombstone when no event remains), so a deleted tail is found too.

A rectified subject's events are never re-hashed: each is checked with the key in force at
its position (SubjectKeyChange), and a tombstone counts under whichever key the subject had
when it was left.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import groupby, pairwise
from typing import Any

from django.utils import timezone

from consent.ledger import chain
from consent.models import (
    ConsentContext,
    ConsentEvent,
    LedgerVerification,
    Subject,
    SubjectKeyChange,
    SubjectTombstone,
)

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
    # A `rectified` event has no purpose; it was hashed with an empty purpose key.
    return chain.event_hash_of(row, subject_key=subject_key, purpose_key=row["purpose__key"] or "")


def key_at(seq: int, key: str, changes: Sequence[SubjectKeyChange]) -> str:
    """The subject key in force at chain position `seq`, given the current `key` and the
    subject's key changes by position: the old key of the first change after `seq`."""
    for change in reversed(changes):
        if seq >= change.from_seq:
            break
        key = change.old_key
    return key


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


# A span of time during which a subject had one key: (key, from, until), None unbounded.
Span = tuple[str, datetime | None, datetime | None]


def _key_spans(
    subject: Subject, changes: Sequence[SubjectKeyChange], first_from: datetime | None
) -> list[Span]:
    """The keys the subject had, and when: its first key from `first_from`, each later one
    from the change that gave it until the next change."""
    first = changes[0].old_key if changes else subject.key
    spans: list[Span] = [(first, first_from, changes[0].created_at if changes else None)]
    for i, change in enumerate(changes):
        until = changes[i + 1].created_at if i + 1 < len(changes) else None
        spans.append((change.new_key, change.created_at, until))
    return spans


def _latest_tombstones(
    subjects: Sequence[Subject], changes: dict[int, list[SubjectKeyChange]]
) -> dict[int, SubjectTombstone]:
    """Each subject's latest tombstone, left under a key it had at the time. A subject's
    first key counts only from when another subject last rectified away from it: a reused
    identifier does not inherit the former holder's tombstones."""
    keys = {s.key for s in subjects} | {c.old_key for cs in changes.values() for c in cs}
    departures = list(
        SubjectKeyChange.objects.filter(old_key__in=keys).values_list(
            "subject_id", "subject__namespace", "old_key", "created_at"
        )
    )
    owners: dict[tuple[str, str], list[tuple[int, Span]]] = defaultdict(list)
    for subject in subjects:
        own = changes.get(subject.pk, [])
        first = own[0].old_key if own else subject.key
        first_from = max(
            (
                at
                for sid, namespace, old_key, at in departures
                if sid != subject.pk and (namespace, old_key) == (subject.namespace, first)
            ),
            default=None,
        )
        for span in _key_spans(subject, own, first_from):
            owners[(subject.namespace, span[0])].append((subject.pk, span))
    latest: dict[int, SubjectTombstone] = {}
    for t in SubjectTombstone.objects.filter(subject_key__in=keys).order_by("created_at", "id"):
        for pk, (_, start, until) in owners.get((t.namespace, t.subject_key), []):
            if (start is None or t.created_at >= start) and (until is None or t.created_at < until):
                latest[pk] = t
    return latest


def _key_change_breaks(
    subject: Subject, changes: Sequence[SubjectKeyChange]
) -> Iterator[tuple[str, str]]:
    """The key changes must link up and end at the subject's current key."""
    for change, after in pairwise(changes):
        if change.new_key != after.old_key:
            yield "key_change_mismatch", f"the key change at seq {after.from_seq} does not follow"
    if changes and changes[-1].new_key != subject.key:
        yield "key_change_mismatch", "the latest key change does not end at the subject's key"


def _verify_subject(
    subject: Subject,
    rows: list[dict[str, Any]],
    tombstone: SubjectTombstone | None,
    contexts: dict[str, str],
    changes: Sequence[SubjectKeyChange] = (),
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

    for kind, message in _key_change_breaks(subject, changes):
        yield brk(kind, message)
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
        if _recompute(row, key_at(row["seq"], subject.key, changes)) != row["hash"]:
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
        changes: dict[int, list[SubjectKeyChange]] = defaultdict(list)
        for change in SubjectKeyChange.objects.filter(subject_id__in=by_pk).order_by(
            "subject_id", "from_seq"
        ):
            changes[change.subject_id].append(change)
        tombstones = _latest_tombstones(subjects, changes)
        grouped = {pk: list(g) for pk, g in groupby(rows, key=lambda r: r["subject_id"])}
        for subject in subjects:
            events = grouped.get(subject.pk, [])
            report.subjects += 1
            report.events += len(events)
            report.breaks.extend(
                _verify_subject(
                    subject,
                    events,
                    tombstones.get(subject.pk),
                    contexts,
                    changes.get(subject.pk, []),
                )
            )


def ledger_verify_recorded(*, trigger: str) -> VerifyReport:
    """Verifies the whole ledger and records the run (what the admin dashboard shows)."""
    started_at = timezone.now()
    report = ledger_verify()
    LedgerVerification.objects.create(
        started_at=started_at,
        finished_at=timezone.now(),
        trigger=trigger,
        subjects=report.subjects,
        events=report.events,
        breaks=len(report.breaks),
    )
    return report
