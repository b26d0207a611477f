"""The one fact gatherer of checks: standings of subjects for one purpose, now or as of T.

`consent.checks.gather.facts_for(connection)` picks the implementation once per database:
PostgreSQL's (`consent.checks.facts_pg`, one SQL template over staged keys or a single
key) or the portable ORM path below (SQLite, the embedded default). The bulk check, the stream, the
single check and drift all read through it; `consent.checks.rule.decide` is the only rule
turning a standing into a verdict, and `verdict_of` below the only place a Standing is built.
Reads for "now" come from ConsentState; reads "as of" an instant from the ledger (the
latest event at or before it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db.models import Q

from consent.checks.rule import PurposeRule, Standing, Verdict, decide
from consent.errors import UnknownPurpose
from consent.models import (
    ConsentEvent,
    ConsentState,
    NoticeVersion,
    Purpose,
    Restriction,
    Source,
    Subject,
)

ACCOUNT = Subject.Namespace.ACCOUNT.value
GPC = Source.GPC.value


@dataclass(slots=True)
class Answers:
    """The answers for a batch of keys, by position: each verdict, and the subject row's
    pk (None: an unknown subject), which a decision's lineage records."""

    subject_pks: list[int | None]
    verdicts: list[Verdict]

    def allowed_pks(self) -> Iterator[int | None]:
        return (pk for pk, v in zip(self.subject_pks, self.verdicts, strict=True) if v.allowed)


@dataclass(slots=True)
class RangeAnswers:
    """Every subject of a range of row ids, in id order: its key, its encrypted identifier
    (None once erased) and its verdict (a snapshot's chunk)."""

    subject_pks: list[int]
    keys: list[str]
    identifiers_encrypted: list[bytes | None]
    verdicts: list[Verdict]


# A gathered row: (pos, subject pk, erased_at, restricted, action, notice version, effective
# since, expires_at, event id, gpc[, anything after]); `restricted` says whether a
# restriction period (Art. 18) covers the instant. An unknown subject has None from the
# subject pk on; one without a standing event, from the action on.
Row = Sequence[Any]
# The columns of a Standing in a row.
_STANDING = slice(4, 10)
FACT_COLUMNS = _STANDING.stop


def verdict_of(rule: PurposeRule, at: datetime) -> Callable[[Row], Verdict]:
    """The verdict on one gathered row: the one place a Standing is built from facts."""
    make = Standing._make

    def verdict(row: Row) -> Verdict:
        standing = make(row[_STANDING]) if row[4] is not None else None
        return decide(rule=rule, standing=standing, erased_at=row[2], at=at, restricted=row[3])

    return verdict


def answers_of(rows: Sequence[Row], count: int, verdict: Callable[[Row], Verdict]) -> Answers:
    """Answers for `count` positions from rows in any order; positions without a row are
    unknown subjects."""
    unknown = verdict((None,) * (_STANDING.start + 1))
    pks: list[int | None] = [None] * count
    verdicts = [unknown] * count
    for row in rows:
        pos = row[0]
        pks[pos] = row[1]
        verdicts[pos] = verdict(row)
    return Answers(pks, verdicts)


def stage_rows(keys: Sequence[str], *, start: int) -> bytes:
    """Staging rows for keys from position `start` on (`pos TAB key` lines, the text format
    of COPY): made while a stream's body is read, kept in an encrypted spool."""
    return "".join([f"{start + i}\t{k}\n" for i, k in enumerate(keys)]).encode()


def staged_keys(rows: Sequence[bytes]) -> list[str]:
    """The keys of staging rows (lines without their line end)."""
    return [row.partition(b"\t")[2].decode() for row in rows]


class StagedRows(Protocol):
    """Where a stream keeps its staging rows (an EphemeralSpool)."""

    def read(self, size: int) -> bytes: ...

    def read_lines(self, count: int) -> list[bytes]: ...


class Facts(ABC):
    """Standings for subject keys and one purpose. On PostgreSQL call the key-staging
    methods inside a transaction: the staged keys' temporary table lives in it."""

    @abstractmethod
    def purpose_rule(self, key: Any) -> PurposeRule:
        """The active purpose with this key and its material notice versions; else 400."""

    @abstractmethod
    def purpose_rule_of(self, purpose_id: int) -> PurposeRule:
        """The rule of a purpose by id, active or not (a past decision's purpose)."""

    @abstractmethod
    def standings(
        self, keys: Sequence[str], rule: PurposeRule, *, at: datetime, as_of: bool
    ) -> Answers:
        """One answer per key, in order. `as_of`: replay the ledger at `at`; else now."""

    def range_standings(
        self, low: int, high: int, rule: PurposeRule, *, at: datetime, as_of: bool
    ) -> RangeAnswers:
        """The standing of every account subject with `low <= id < high`, in id order.
        This one reads the subjects, then their standings by key; PostgreSQL reads both in
        one query over the id range."""
        subjects = (
            Subject.objects.filter(namespace=ACCOUNT, pk__gte=low, pk__lt=high)
            .order_by("pk")
            .values_list("pk", "key", "identifier_encrypted")
        )
        pks: list[int] = []
        keys: list[str] = []
        encrypted: list[bytes | None] = []
        for pk, key, blob in subjects.iterator(chunk_size=5000):
            pks.append(pk)
            keys.append(key)
            encrypted.append(None if blob is None else bytes(blob))
        answers = self.standings(keys, rule, at=at, as_of=as_of)
        return RangeAnswers(pks, keys, encrypted, answers.verdicts)

    def staged_answers(
        self,
        rows: StagedRows,
        total: int,
        rule: PurposeRule,
        *,
        at: datetime,
        as_of: bool,
        batch: int,
    ) -> Iterator[Answers]:
        """The answers for `total` staging rows (see `stage_rows`), in order, by batches.
        This one reads the rows a batch at a time through `standings`; PostgreSQL joins
        them all at once through a server-side cursor instead."""
        for start in range(0, total, batch):
            keys = staged_keys(rows.read_lines(min(batch, total - start)))
            yield self.standings(keys, rule, at=at, as_of=as_of)

    @abstractmethod
    def one(
        self, key: str, purpose_key: str, *, at: datetime, as_of: bool
    ) -> tuple[PurposeRule, Verdict]:
        """The purpose's rule and the answer for one key (UnknownPurpose if none)."""


def unknown_purpose(key: Any) -> UnknownPurpose:
    return UnknownPurpose(f"Unknown or inactive purpose: {key}.", detail={"purpose": key})


class PortableFacts(Facts):
    """The ORM implementation: keys looked up in batches of 500, for any database."""

    def purpose_rule(self, key: Any) -> PurposeRule:
        purpose = (
            Purpose.objects.filter(key=key, active=True).first() if isinstance(key, str) else None
        )
        if purpose is None:
            raise unknown_purpose(key)
        return self._rule(purpose)

    def purpose_rule_of(self, purpose_id: int) -> PurposeRule:
        return self._rule(Purpose.objects.get(pk=purpose_id))

    @staticmethod
    def _rule(purpose: Purpose) -> PurposeRule:
        material = NoticeVersion.objects.filter(purpose=purpose, material=True).values_list(
            "version", "published_at"
        )
        return PurposeRule(
            id=purpose.pk,
            key=purpose.key,
            legal_basis=purpose.legal_basis,
            gpc_opt_out=purpose.gpc_opt_out,
            material_versions=tuple(material),
        )

    def standings(
        self, keys: Sequence[str], rule: PurposeRule, *, at: datetime, as_of: bool
    ) -> Answers:
        positions: dict[str, list[int]] = {}
        for pos, key in enumerate(keys):
            positions.setdefault(key, []).append(pos)
        unique = list(positions)
        rows = [
            (pos, *facts)
            for start in range(0, len(unique), 500)
            for key, facts in self._facts(unique[start : start + 500], rule, at, as_of)
            for pos in positions[key]
        ]
        return answers_of(rows, len(keys), verdict_of(rule, at))

    @staticmethod
    def _facts(
        keys: list[str], rule: PurposeRule, at: datetime, as_of: bool
    ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """(key, facts) of the known subjects among `keys`."""
        subjects = {
            pk: (key, erased_at)
            for key, pk, erased_at in Subject.objects.filter(
                namespace=ACCOUNT, key__in=keys
            ).values_list("key", "id", "erased_at")
        }
        restricted = set(
            Restriction.objects.filter(subject_id__in=subjects, started_at__lte=at)
            .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=at))
            .values_list("subject_id", flat=True)
        )
        found: dict[int, tuple[Any, ...]] = {}
        if as_of:
            events = (
                ConsentEvent.objects.filter(
                    subject_id__in=subjects, purpose_id=rule.id, effective_at__lte=at
                )
                .order_by("subject_id", "-effective_at", "-seq")
                .values_list(
                    "subject_id",
                    "action",
                    "notice_version",
                    "effective_at",
                    "expires_at",
                    "id",
                    "source",
                )
            )
            for sid, action, version, eff, exp, eid, source in events:
                if sid not in found:
                    found[sid] = (action, version, eff, exp, str(eid), source == GPC)
        else:
            states = ConsentState.objects.filter(
                subject_id__in=subjects, purpose_id=rule.id
            ).values_list(
                "subject_id", "status", "notice_version", "since", "expires_at", "event_id", "gpc"
            )
            for sid, status, version, since, exp, eid, gpc in states:
                found[sid] = (status, version, since, exp, str(eid), gpc)
        for pk, (key, erased_at) in subjects.items():
            yield key, (pk, erased_at, pk in restricted, *found.get(pk, (None,) * 6))

    def one(
        self, key: str, purpose_key: str, *, at: datetime, as_of: bool
    ) -> tuple[PurposeRule, Verdict]:
        rule = self.purpose_rule(purpose_key)
        return rule, self.standings([key], rule, at=at, as_of=as_of).verdicts[0]
