"""Bulk and streamed checks: gather the facts, decide, and record the Decision (with its
lineage) in the same transaction. The checks own their transactions: the staged keys'
temporary table lives in one, and the stream spans several steps.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from consent.checks import stream
from consent.checks.facts import Answers
from consent.checks.gather import facts_for
from consent.checks.inputs import MAX_BULK_IDS, SubjectHasher, digest_hex, id_set_digest_add
from consent.checks.rule import PurposeRule
from consent.decisions.lineage import lineage_load
from consent.decisions.services import decision_audit, decision_finish, decision_new
from consent.errors import InvalidAttributes
from consent.identity import validate_identifiers
from consent.models import DataUse, Decision
from consent.skew import AttributesInvalid, SkewTally
from governance.actors import Actor
from governance.crypto import EphemeralSpool
from governance.errors import InvalidRequest
from governance.metrics import checks_observe

SPOOL_IN_MEMORY = 8 * 1024 * 1024


# --- the bulk check ------------------------------------------------------------------------


@dataclass
class BulkResult:
    decision: Decision
    ids: list[str]
    answers: Answers


def denied_reasons(answers: Answers) -> dict[str, int]:
    """How many were denied, per reason (what a decision keeps of its verdicts)."""
    return dict(sorted(Counter(v.reason for v in answers.verdicts if not v.allowed).items()))


def attributes_invalid(exc: AttributesInvalid, **where: Any) -> InvalidAttributes:
    return InvalidAttributes(str(exc), detail={**exc.detail, **where})


def skew_tally(ids: list[str], attributes: Any) -> SkewTally:
    """The bulk check's attributes, by subject id (ids missing count under null), checked
    against the limits and kept only as the tally's value indexes."""
    if not isinstance(attributes, dict):
        raise InvalidAttributes(
            "attributes must be an object of subject ids to {name: value} objects.",
            detail={"field": "attributes"},
        )
    tally = SkewTally()
    for position, subject_id in enumerate(ids):
        try:
            tally.register(attributes.get(subject_id))
        except AttributesInvalid as exc:
            raise attributes_invalid(exc, field="attributes", index=position) from None
    return tally


def checks_run(
    *,
    actor: Actor,
    rule: PurposeRule,
    ids: list[str],
    data_use: DataUse | None = None,
    as_of: datetime | None = None,
    lineage: bool = False,
    attributes: Any = None,
    now: datetime | None = None,
) -> BulkResult:
    """Checks up to MAX_BULK_IDS identifiers and records the Decision, in one transaction.

    With `attributes` ({subject id: {name: value}}), the Decision keeps the consent-skew
    report of the verdicts (consent.skew); the attributes themselves are not kept."""
    validate_identifiers(ids)
    if len(ids) > MAX_BULK_IDS:
        raise InvalidRequest(
            f"At most {MAX_BULK_IDS} subject ids per call; use /checks/stream for more.",
            detail={"field": "subject_ids", "max": MAX_BULK_IDS, "given": len(ids)},
        )
    tally = skew_tally(ids, attributes) if attributes is not None else None
    moment = now or timezone.now()
    at = as_of or moment
    keys = SubjectHasher().many(ids)
    with transaction.atomic():
        answers = facts_for(connection).standings(keys, rule, at=at, as_of=as_of is not None)
        allowed = sum([v.allowed for v in answers.verdicts])
        decision = decision_new(
            actor=actor,
            rule=rule,
            data_use=data_use,
            as_of=as_of,
            at=at,
            mode="bulk",
            lineage=lineage,
            now=moment,
        )
        decision.status = Decision.Status.COMPLETE
        decision.total = len(ids)
        decision.allowed_count = allowed
        decision.denied_count = len(ids) - allowed
        decision.id_set_digest = digest_hex(id_set_digest_add(0, keys))
        decision.reasons = denied_reasons(answers)
        if tally is not None:
            tally.decide_many(answers.verdicts)
            decision.skew = tally.report()
        decision.save(force_insert=True)
        if lineage:
            lineage_load(
                decision_id=decision.id,
                subject_pks=answers.allowed_pks(),
            )
        decision_audit(actor, decision, rule.key)
    checks_observe(mode="bulk", purpose=rule.key, verdicts=answers.verdicts)
    return BulkResult(decision=decision, ids=ids, answers=answers)


# --- the streamed check --------------------------------------------------------------------


# The C string encoder json.dumps uses, without its per-call overhead.
_encode_id: Callable[[str], str] = encode_basestring  # type: ignore[assignment]


@dataclass
class StreamCheck:
    """A streamed check in two phases, so that clients which send everything first work.

    `consume` first reads the whole NDJSON body, block by block, outside any transaction:
    it validates and hashes each chunk of ids and parks the ids and their keys in encrypted
    spools (memory stays bounded; beyond SPOOL_IN_MEMORY a spool is on disk). Only then,
    in one transaction that also creates the Decision (pending) and its lineage, it answers
    the ids into a third spool: a bad line or a dropped upload writes nothing, and a slow
    upload holds no lock. `answers` then streams the spool and the summary, and marks the
    decision complete only after the last line was handed to the server; a client that
    goes away midway leaves it abandoned.
    """

    actor: Actor
    rule: PurposeRule
    data_use: DataUse | None = None
    as_of: datetime | None = None
    lineage: bool = False
    now: datetime | None = None
    decision: Decision | None = None
    allowed: int = 0
    denied: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    skew: dict[str, Any] | None = None
    _spool: EphemeralSpool | None = field(default=None, repr=False)
    _tally: SkewTally = field(default_factory=SkewTally, repr=False)

    def consume(self, blocks: Iterable[bytes]) -> None:
        moment = self.now or timezone.now()
        at = self.as_of or moment
        spool = EphemeralSpool(max_size=SPOOL_IN_MEMORY)
        self._spool = spool
        try:
            with (
                EphemeralSpool(max_size=SPOOL_IN_MEMORY) as ids_spool,
                EphemeralSpool(max_size=SPOOL_IN_MEMORY) as rows_spool,
            ):
                total, digest = stream.body_spool(blocks, ids_spool, rows_spool, self._tally)
                ids_spool.rewind()
                rows_spool.rewind()
                with transaction.atomic():
                    decision = decision_new(
                        actor=self.actor,
                        rule=self.rule,
                        data_use=self.data_use,
                        as_of=self.as_of,
                        at=at,
                        mode="stream",
                        lineage=self.lineage,
                        now=moment,
                    )
                    decision.save(force_insert=True)
                    self._answer_all(spool, decision, ids_spool, rows_spool, total, at)
                    decision.total = self.allowed + self.denied
                    decision.allowed_count = self.allowed
                    decision.denied_count = self.denied
                    decision.id_set_digest = digest_hex(digest)
                    decision.reasons = dict(sorted(self.reasons.items()))
                    if self._tally.seen:
                        self.skew = decision.skew = self._tally.report()
                    decision.save(
                        update_fields=[
                            "total",
                            "allowed_count",
                            "denied_count",
                            "id_set_digest",
                            "reasons",
                            "skew",
                        ]
                    )
                    decision_audit(self.actor, decision, self.rule.key)
                    self.decision = decision
        except BaseException:
            spool.close()
            self._spool = None
            raise

    def _answer_all(
        self,
        spool: EphemeralSpool,
        decision: Decision,
        ids_spool: EphemeralSpool,
        rows_spool: EphemeralSpool,
        total: int,
        at: datetime,
    ) -> None:
        """Answers every spooled id, in order, into `spool` (inside the decision's
        transaction)."""
        suffixes: dict[tuple[bool, str], str] = {}
        batches = facts_for(connection).staged_answers(
            rows_spool,
            total,
            self.rule,
            at=at,
            as_of=self.as_of is not None,
            batch=stream.STREAM_CHUNK,
        )
        for answers in batches:
            ids = [line.decode("utf-8") for line in ids_spool.read_lines(len(answers.verdicts))]
            self._answer(spool, ids, answers, suffixes, decision)

    def _answer(
        self,
        spool: EphemeralSpool,
        ids: list[str],
        answers: Answers,
        suffixes: dict[tuple[bool, str], str],
        decision: Decision,
    ) -> None:
        """Writes one batch of answer lines to the spool and its allowed subjects' lineage."""
        out: list[str] = []
        append = out.append
        for subject_id, verdict in zip(ids, answers.verdicts, strict=True):
            suffix = suffixes.get(verdict[:2])
            if suffix is None:
                flag = "true" if verdict.allowed else "false"
                suffix = f',"allowed":{flag},"reason":"{verdict.reason}"}}\n'
                suffixes[verdict[:2]] = suffix
            append('{"subject_id":' + _encode_id(subject_id) + suffix)
        allowed = sum([v.allowed for v in answers.verdicts])
        self.allowed += allowed
        self.denied += len(out) - allowed
        checks_observe(mode="stream", purpose=self.rule.key, verdicts=answers.verdicts)
        self.reasons.update(v.reason for v in answers.verdicts if not v.allowed)
        if self._tally.seen:
            self._tally.decide_many(answers.verdicts)
        spool.write("".join(out).encode("utf-8"))
        if self.lineage:
            lineage_load(
                decision_id=decision.id,
                subject_pks=answers.allowed_pks(),
            )

    def summary(self) -> dict[str, Any]:
        assert self.decision is not None
        summary: dict[str, Any] = {
            "decision_id": str(self.decision.id),
            "allowed": self.allowed,
            "denied": self.denied,
        }
        if self.skew is not None:
            summary["skew"] = self.skew
        return summary

    def answers(self, block_size: int = 64 * 1024) -> Iterator[bytes]:
        assert self.decision is not None and self._spool is not None
        spool, decision = self._spool, self.decision
        finished = False
        try:
            spool.rewind()
            while block := spool.read(block_size):
                yield block
            yield (json.dumps({"summary": self.summary()}) + "\n").encode()
            # Reached only when the server asks for more after the last line: it was sent.
            decision_finish(decision=decision, status=Decision.Status.COMPLETE)
            finished = True
        finally:
            spool.close()
            if not finished:
                decision_finish(decision=decision, status=Decision.Status.ABANDONED)
