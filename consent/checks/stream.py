"""The body of a streamed check: NDJSON lines read block by block, validated, hashed and
parked in encrypted spools, in bounded memory, before any transaction opens."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings

from consent.checks.facts import stage_rows
from consent.checks.inputs import SubjectHasher, id_set_digest_add
from consent.errors import InvalidAttributes, LineTooLong
from consent.identity import validate_identifiers
from consent.skew import AttributesInvalid, SkewTally
from governance.api.parsers import (
    MAX_JSON_DEPTH,
    may_nest_deeper_than,
    nested_deeper_than,
    too_deeply_nested,
)
from governance.crypto import EphemeralSpool
from governance.errors import InvalidRequest

STREAM_CHUNK = 20_000


def body_spool(
    blocks: Iterable[bytes],
    ids_spool: EphemeralSpool,
    rows_spool: EphemeralSpool,
    tally: SkewTally | None = None,
) -> tuple[int, int]:
    """Reads, validates and hashes the whole body, before any transaction is opened: a
    client that stalls midway then holds no lock (in embedded mode SQLite's BEGIN IMMEDIATE
    would take the database's only write lock and every consent write would wait on the
    upload). Keeps the ids, in order, and their staging rows aside; returns how many ids
    and the id-set digest. Lines' attributes go to `tally` (in memory, never spooled)."""
    hasher = SubjectHasher()
    total = digest = 0
    max_line = settings.CHECK_STREAM_MAX_LINE_BYTES
    tally = tally if tally is not None else SkewTally()
    for numbers, lines in line_batches(blocks, STREAM_CHUNK, max_line):
        ids = _parse_lines(numbers, lines, tally)
        keys = hasher.many(ids)
        digest = id_set_digest_add(digest, keys)
        rows_spool.write(stage_rows(keys, start=total))
        ids_spool.write(("\n".join(ids) + "\n").encode("utf-8"))
        total += len(ids)
    return total, digest


def _line_too_long(number: int, max_line: int) -> LineTooLong:
    return LineTooLong(
        f"Line {number} is longer than {max_line} bytes.",
        detail={"line": number, "max_bytes": max_line},
    )


def line_batches(
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


def _tally_attributes(tally: SkewTally, numbers: list[int], items: list[Any]) -> None:
    """Each line's `attributes` into the tally (a batch without any costs no loop)."""
    if not any("attributes" in item for item in items):
        tally.register_absent(len(items))
        return
    tally.seen = True
    for number, item in zip(numbers, items, strict=True):
        try:
            tally.register(item.get("attributes"))
        except AttributesInvalid as exc:
            raise InvalidAttributes(
                f"Line {number}: {exc}", detail={**exc.detail, "line": number}
            ) from None


def _parse_lines(numbers: list[int], lines: list[bytes], tally: SkewTally) -> list[str]:
    """The subject ids of a batch of NDJSON lines; a bad line is a 400 naming its number.

    Fast path: the batch parsed as one JSON array (one C call). When that fails or does not
    give exactly one object per line, each line is parsed alone to find the culprit. A line
    nested deeper than MAX_JSON_DEPTH is refused as a body would be (governance.api.parsers).
    """
    ids: list[str] | None = None
    items: Any = None
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
        items = []
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
            items.append(item)
    validate_identifiers(ids, line_numbers=numbers)
    _tally_attributes(tally, numbers, items)
    return ids
