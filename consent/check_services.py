"""Writes of the check side: data uses, and the Decision (with lineage) every bulk check leaves.

Kept beside consent/services.py rather than in it: the check engine owns its transactions
(temporary tables, COPY) and the stream spans several, which reads better in one place.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from consent.checks import (
    MAX_BULK_IDS,
    Looked,
    PurposeRule,
    SubjectHasher,
    digest_hex,
    id_set_digest_add,
    lookup,
    stream_stage_add,
    stream_stage_open,
    stream_staged_answers,
    validate_ids,
)
from consent.errors import (
    DataUsePurposeMismatch,
    DuplicateDataUse,
    UnknownDataUse,
    UnknownPurpose,
)
from consent.models import DataUse, Decision, DecisionLineage, Purpose
from governance.actors import Actor
from governance.audit import audit_record
from governance.crypto import EphemeralSpool
from governance.errors import InvalidRequest

STREAM_CHUNK = 20_000
SPOOL_IN_MEMORY = 8 * 1024 * 1024


# --- data uses ----------------------------------------------------------------------------


def _string_list(value: Any, field_name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(
            f"{field_name} must be a list of non-empty strings.", detail={"field": field_name}
        )
    return list(value)


@transaction.atomic
def data_use_create(
    *,
    key: str,
    name: str,
    purpose_key: str,
    actor: Actor,
    owner: str = "",
    description: str = "",
    data_categories: Sequence[str] = (),
    recipients: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> DataUse:
    """Registers a processing activity (a record of processing) and audits it."""
    purpose = Purpose.objects.filter(key=purpose_key, active=True).first()
    if purpose is None:
        raise UnknownPurpose(detail={"purpose": purpose_key})
    if DataUse.objects.filter(key=key).exists():
        raise DuplicateDataUse(detail={"key": key})
    data_use = DataUse.objects.create(
        key=key,
        name=name,
        purpose=purpose,
        owner=owner,
        description=description,
        data_categories=_string_list(list(data_categories), "data_categories"),
        recipients=_string_list(list(recipients), "recipients"),
        datasets=_string_list(list(datasets), "datasets"),
    )
    audit_record(
        actor=actor,
        action="data_use.create",
        target_type="data_use",
        target_id=data_use.key,
        detail={"purpose": purpose.key, "owner": owner},
    )
    return data_use


def data_use_for_check(key: Any, rule: PurposeRule) -> DataUse | None:
    """The named data use, which must serve the checked purpose; None when not named."""
    if key is None or key == "":
        return None
    data_use = (
        DataUse.objects.filter(key=key, active=True).first() if isinstance(key, str) else None
    )
    if data_use is None:
        raise UnknownDataUse(detail={"data_use": key})
    if data_use.purpose_id != rule.id:
        raise DataUsePurposeMismatch(
            detail={"data_use": key, "data_use_purpose": data_use.purpose.key, "purpose": rule.key}
        )
    return data_use


# --- lineage -------------------------------------------------------------------------------


def lineage_load(*, decision_id: uuid.UUID, subject_pks: Iterable[int]) -> None:
    """Bulk-loads allowed subjects into a decision's lineage; repeats are ignored.

    PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT. Elsewhere: batched
    INSERTs. Call inside the decision's transaction.
    """
    pks = sorted(set(subject_pks))
    if not pks:
        return
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        cur = connection.connection.cursor()
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS lineage_stage (subject_id bigint) "
            "ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE lineage_stage")
        with cur.copy("COPY lineage_stage (subject_id) FROM STDIN") as copy:
            copy.write("".join([f"{pk}\n" for pk in pks]))
        cur.execute(
            "INSERT INTO consent_decisionlineage (decision_id, subject_id) "
            "SELECT %s, subject_id FROM lineage_stage ON CONFLICT DO NOTHING",
            (decision_id,),
        )
        return
    DecisionLineage.objects.bulk_create(
        [DecisionLineage(decision_id=decision_id, subject_id=pk) for pk in pks],
        batch_size=500,
        ignore_conflicts=True,
    )


def _decision_new(
    *,
    actor: Actor,
    rule: PurposeRule,
    data_use: DataUse | None,
    as_of: datetime | None,
    at: datetime,
    mode: str,
    lineage: bool,
    now: datetime,
) -> Decision:
    return Decision(
        created_at=now,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        data_use=data_use,
        purpose_id=rule.id,
        as_of=at,
        as_of_requested=as_of is not None,
        mode=mode,
        lineage=lineage,
    )


def _decision_audit(actor: Actor, decision: Decision, purpose_key: str) -> None:
    """One audit row per check (no identifiers: counts, purpose and the id-set digest)."""
    audit_record(
        actor=actor,
        action=f"checks.{decision.mode}",
        target_type="decision",
        target_id=str(decision.id),
        detail={
            "purpose": purpose_key,
            "data_use": decision.data_use.key if decision.data_use else None,
            "total": decision.total,
            "allowed": decision.allowed_count,
            "as_of": decision.as_of.isoformat() if decision.as_of_requested else None,
            "lineage": decision.lineage,
            "id_set_digest": decision.id_set_digest,
        },
    )


# --- the bulk check ------------------------------------------------------------------------


@dataclass
class BulkResult:
    decision: Decision
    ids: list[str]
    answers: list[Looked]


def checks_run(
    *,
    actor: Actor,
    rule: PurposeRule,
    ids: list[str],
    data_use: DataUse | None = None,
    as_of: datetime | None = None,
    lineage: bool = False,
    now: datetime | None = None,
) -> BulkResult:
    """Checks up to MAX_BULK_IDS identifiers and records the Decision, in one transaction."""
    validate_ids(ids)
    if len(ids) > MAX_BULK_IDS:
        raise InvalidRequest(
            f"At most {MAX_BULK_IDS} subject ids per call; use /checks/stream for more.",
            detail={"field": "subject_ids", "max": MAX_BULK_IDS, "given": len(ids)},
        )
    moment = now or timezone.now()
    at = as_of or moment
    keys = SubjectHasher().many(ids)
    with transaction.atomic():
        answers = lookup(keys, rule, at=at, as_of=as_of is not None)
        allowed = sum(1 for a in answers if a.verdict.allowed)
        decision = _decision_new(
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
        decision.save(force_insert=True)
        if lineage:
            lineage_load(
                decision_id=decision.id,
                subject_pks=(
                    a.subject_pk for a in answers if a.verdict.allowed and a.subject_pk is not None
                ),
            )
        _decision_audit(actor, decision, rule.key)
    return BulkResult(decision=decision, ids=ids, answers=answers)


# --- the streamed check --------------------------------------------------------------------


# The C string encoder json.dumps uses, without its per-call overhead.
_encode_id: Callable[[str], str] = encode_basestring  # type: ignore[assignment]


@dataclass
class StreamCheck:
    """A streamed check in two phases, so that clients which send everything first work.

    `consume` reads the NDJSON body block by block, answers each chunk of ids and spools
    the answer lines to a temporary file (memory stays bounded; beyond SPOOL_IN_MEMORY the
    spool is on disk), inside one transaction that also creates the Decision (pending) and
    its lineage: a bad line or a dropped upload rolls it all back. `answers` then streams
    the spool and the summary, and marks the decision complete only after the last line was
    handed to the server; a client that goes away midway leaves it abandoned.
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
    _spool: EphemeralSpool | None = field(default=None, repr=False)

    def consume(self, blocks: Iterable[bytes]) -> None:
        moment = self.now or timezone.now()
        at = self.as_of or moment
        hasher = SubjectHasher()
        spool = EphemeralSpool(max_size=SPOOL_IN_MEMORY)
        self._spool = spool
        digest = 0
        suffixes: dict[tuple[bool, str], str] = {}
        try:
            with transaction.atomic():
                decision = _decision_new(
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
                staged = connection.vendor == "postgresql"
                if staged:
                    stream_stage_open()
                    with EphemeralSpool(max_size=SPOOL_IN_MEMORY) as ids_spool:
                        # Phase 1: validate and stage every key; keep the ids, in order, aside.
                        position = 0
                        for numbers, lines in _line_batches(blocks, STREAM_CHUNK):
                            ids = _parse_lines(numbers, lines)
                            keys = hasher.many(ids)
                            digest = id_set_digest_add(digest, keys)
                            stream_stage_add(keys, start=position)
                            position += len(ids)
                            ids_spool.write(("\n".join(ids) + "\n").encode("utf-8"))
                        # Phase 2: one ordered join, answered a batch at a time.
                        ids_spool.rewind()
                        for answers in stream_staged_answers(
                            self.rule, at=at, as_of=self.as_of is not None, batch=STREAM_CHUNK
                        ):
                            batch_ids = [
                                line.decode("utf-8") for line in ids_spool.read_lines(len(answers))
                            ]
                            self._answer(spool, batch_ids, answers, suffixes, decision)
                else:
                    for numbers, lines in _line_batches(blocks, STREAM_CHUNK):
                        ids = _parse_lines(numbers, lines)
                        keys = hasher.many(ids)
                        digest = id_set_digest_add(digest, keys)
                        answers = lookup(keys, self.rule, at=at, as_of=self.as_of is not None)
                        self._answer(spool, ids, answers, suffixes, decision)
                decision.total = self.allowed + self.denied
                decision.allowed_count = self.allowed
                decision.denied_count = self.denied
                decision.id_set_digest = digest_hex(digest)
                decision.save(
                    update_fields=["total", "allowed_count", "denied_count", "id_set_digest"]
                )
                _decision_audit(self.actor, decision, self.rule.key)
                self.decision = decision
        except BaseException:
            spool.close()
            self._spool = None
            raise

    def _answer(
        self,
        spool: EphemeralSpool,
        ids: list[str],
        answers: list[Looked],
        suffixes: dict[tuple[bool, str], str],
        decision: Decision,
    ) -> None:
        """Writes one batch of answer lines to the spool and its allowed subjects' lineage."""
        out = []
        for subject_id, answer in zip(ids, answers, strict=True):
            verdict = answer.verdict
            tag = (verdict.allowed, verdict.reason)
            suffix = suffixes.get(tag)
            if suffix is None:
                flag = "true" if verdict.allowed else "false"
                suffix = f',"allowed":{flag},"reason":"{verdict.reason}"}}\n'
                suffixes[tag] = suffix
            out.append('{"subject_id":' + _encode_id(subject_id) + suffix)
            if verdict.allowed:
                self.allowed += 1
            else:
                self.denied += 1
        spool.write("".join(out).encode("utf-8"))
        if self.lineage:
            lineage_load(
                decision_id=decision.id,
                subject_pks=(
                    a.subject_pk for a in answers if a.verdict.allowed and a.subject_pk is not None
                ),
            )

    def summary(self) -> dict[str, Any]:
        assert self.decision is not None
        return {
            "decision_id": str(self.decision.id),
            "allowed": self.allowed,
            "denied": self.denied,
        }

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


@transaction.atomic
def decision_finish(*, decision: Decision, status: str) -> None:
    """Marks a pending decision complete, or abandoned (its lineage then goes: never used)."""
    Decision.objects.filter(pk=decision.pk, status=Decision.Status.PENDING).update(status=status)
    decision.status = status
    if status == Decision.Status.ABANDONED:
        DecisionLineage.objects.filter(decision_id=decision.pk).delete()


def _line_batches(blocks: Iterable[bytes], size: int) -> Iterator[tuple[list[int], list[bytes]]]:
    """Non-blank lines in batches of `size`, each with its 1-based line number."""
    numbers: list[int] = []
    lines: list[bytes] = []
    carry = b""
    number = 0
    for block in blocks:
        if not block:
            continue
        parts = (carry + block).split(b"\n")
        carry = parts.pop()
        for part in parts:
            number += 1
            stripped = part.strip()
            if stripped:
                numbers.append(number)
                lines.append(stripped)
        if len(lines) >= size:
            yield numbers, lines
            numbers, lines = [], []
    if carry.strip():
        numbers.append(number + 1)
        lines.append(carry.strip())
    if lines:
        yield numbers, lines


def _parse_lines(numbers: list[int], lines: list[bytes]) -> list[str]:
    """The subject ids of a batch of NDJSON lines; a bad line is a 400 naming its number.

    Fast path: the batch parsed as one JSON array (one C call). When that fails or does not
    give exactly one object per line, each line is parsed alone to find the culprit.
    """
    ids: list[str] | None = None
    if all(line[:1] == b"{" and line[-1:] == b"}" for line in lines):
        try:
            items = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            items = None
        if items is not None and len(items) == len(lines):
            try:
                ids = [item["subject_id"] for item in items]
            except (KeyError, TypeError):
                ids = None
    if ids is None:
        ids = []
        for number, line in zip(numbers, lines, strict=True):
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise InvalidRequest(
                    f"Line {number}: not valid JSON.", detail={"line": number}
                ) from exc
            if not isinstance(item, dict) or "subject_id" not in item:
                raise InvalidRequest(
                    f'Line {number}: expected an object {{"subject_id": "..."}}.',
                    detail={"line": number},
                )
            ids.append(item["subject_id"])
    validate_ids(ids, line_numbers=numbers)
    return ids
