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

from django.conf import settings
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
    stream_stage_copy,
    stream_stage_keys,
    stream_stage_open,
    stream_stage_rows,
    stream_staged_answers,
)
from consent.errors import (
    DataUsePurposeMismatch,
    DuplicateDataUse,
    LineTooLong,
    UnknownDataUse,
    UnknownPurpose,
)
from consent.identity import validate_identifiers
from consent.models import DataUse, Decision, DecisionLineage, Purpose
from governance.actors import Actor
from governance.api.parsers import (
    MAX_JSON_DEPTH,
    may_nest_deeper_than,
    nested_deeper_than,
    too_deeply_nested,
)
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
    validate_identifiers(ids)
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
    _spool: EphemeralSpool | None = field(default=None, repr=False)

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
                total, digest = _spool_body(blocks, ids_spool, rows_spool)
                ids_spool.rewind()
                rows_spool.rewind()
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
                    self._answer_all(spool, decision, ids_spool, rows_spool, total, at)
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
        as_of = self.as_of is not None
        if connection.vendor == "postgresql":
            # Stage every key (one COPY), then one ordered join, answered a batch at a time.
            stream_stage_open()
            stream_stage_copy(rows_spool.read)
            for answers in stream_staged_answers(self.rule, at=at, as_of=as_of, batch=STREAM_CHUNK):
                ids = [line.decode("utf-8") for line in ids_spool.read_lines(len(answers))]
                self._answer(spool, ids, answers, suffixes, decision)
            return
        for start in range(0, total, STREAM_CHUNK):
            count = min(STREAM_CHUNK, total - start)
            keys = stream_stage_keys(rows_spool.read_lines(count))
            answers = lookup(keys, self.rule, at=at, as_of=as_of)
            ids = [line.decode("utf-8") for line in ids_spool.read_lines(count)]
            self._answer(spool, ids, answers, suffixes, decision)

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


def _spool_body(
    blocks: Iterable[bytes], ids_spool: EphemeralSpool, rows_spool: EphemeralSpool
) -> tuple[int, int]:
    """Reads, validates and hashes the whole body, before any transaction is opened: a
    client that stalls midway then holds no lock (in embedded mode SQLite's BEGIN IMMEDIATE
    would take the database's only write lock and every consent write would wait on the
    upload). Keeps the ids, in order, and their staging rows aside; returns how many ids
    and the id-set digest."""
    hasher = SubjectHasher()
    total = digest = 0
    max_line = settings.CHECK_STREAM_MAX_LINE_BYTES
    for numbers, lines in _line_batches(blocks, STREAM_CHUNK, max_line):
        ids = _parse_lines(numbers, lines)
        keys = hasher.many(ids)
        digest = id_set_digest_add(digest, keys)
        rows_spool.write(stream_stage_rows(keys, start=total))
        ids_spool.write(("\n".join(ids) + "\n").encode("utf-8"))
        total += len(ids)
    return total, digest


def _line_too_long(number: int, max_line: int) -> LineTooLong:
    return LineTooLong(
        f"Line {number} is longer than {max_line} bytes.",
        detail={"line": number, "max_bytes": max_line},
    )


def _line_batches(
    blocks: Iterable[bytes], size: int, max_line: int
) -> Iterator[tuple[list[int], list[bytes]]]:
    """Non-blank lines in batches of `size`, each with its 1-based line number.

    A line longer than `max_line` bytes is a 400 line_too_long as soon as it grows past the
    limit, before the rest of the body is read. Linear in the body: each block is split
    once, and only the unfinished tail is copied into the carry (a bytearray, appended to
    in place), so many small blocks of one long line cost no more than one large block.
    """
    numbers: list[int] = []
    lines: list[bytes] = []
    carry = bytearray()
    number = 0
    for block in blocks:
        if not block:
            continue
        parts = block.split(b"\n")
        if len(parts) == 1:  # no line end in this block: the current line goes on
            carry += block
            if len(carry) > max_line:
                raise _line_too_long(number + 1, max_line)
            continue
        tail = parts.pop()
        if carry:
            carry += parts[0]
            parts[0] = bytes(carry)
        if max(map(len, parts)) > max_line:
            over = next(i for i, part in enumerate(parts) if len(part) > max_line)
            raise _line_too_long(number + 1 + over, max_line)
        if len(tail) > max_line:
            raise _line_too_long(number + len(parts) + 1, max_line)
        carry = bytearray(tail)
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
        lines.append(bytes(carry.strip()))
    if lines:
        yield numbers, lines


def _parse_lines(numbers: list[int], lines: list[bytes]) -> list[str]:
    """The subject ids of a batch of NDJSON lines; a bad line is a 400 naming its number.

    Fast path: the batch parsed as one JSON array (one C call). When that fails or does not
    give exactly one object per line, each line is parsed alone to find the culprit. A line
    nested deeper than MAX_JSON_DEPTH is refused as a body would be (governance.api.parsers).
    """
    ids: list[str] | None = None
    if all(line[:1] == b"{" and line[-1:] == b"}" for line in lines):
        joined = b"[" + b",".join(lines) + b"]"
        try:
            items = json.loads(joined)
        except (ValueError, RecursionError):
            items = None
        # Each line brings its own "{": more brackets than lines means something nests
        # (or an id holds a bracket), and only then are the lines' depths worth a look.
        if (
            items is not None
            and len(items) == len(lines)
            and not (
                may_nest_deeper_than(joined, len(lines) + 1)
                and nested_deeper_than(items, MAX_JSON_DEPTH + 1)
            )
        ):
            try:
                ids = [item["subject_id"] for item in items]
            except (KeyError, TypeError):
                ids = None
    if ids is None:
        ids = []
        for number, line in zip(numbers, lines, strict=True):
            try:
                item = json.loads(line)
            except RecursionError:
                raise too_deeply_nested(line=number) from None
            except ValueError as exc:
                raise InvalidRequest(
                    f"Line {number}: not valid JSON.", detail={"line": number}
                ) from exc
            if may_nest_deeper_than(line, MAX_JSON_DEPTH) and nested_deeper_than(
                item, MAX_JSON_DEPTH
            ):
                raise too_deeply_nested(line=number)
            if not isinstance(item, dict) or "subject_id" not in item:
                raise InvalidRequest(
                    f'Line {number}: expected an object {{"subject_id": "..."}}.',
                    detail={"line": number},
                )
            ids.append(item["subject_id"])
    validate_identifiers(ids, line_numbers=numbers)
    return ids
