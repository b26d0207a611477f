"""An import's first step: the whole file checked (every row a valid record for this
service, external ids unique), before anything is written; and the dry run's counts."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.utils import timezone

from consent import identity
from consent.errors import ImportInvalid
from consent.imports.formats import (
    JSONLD_MAPPING,
    ImportMapping,
    ImportRecord,
    PurposeNotices,
    mapping_load,
    row_check,
    rows_read,
)
from consent.models import (
    ImportedRecord,
    NoticeVersion,
    Purpose,
)

# Rows named in an import_invalid answer (the count says how many there were in all).
MAX_ROWS_NAMED = 100


def external_id_hash(external_id: str) -> str:
    """The keyed hash an external id is kept as (it may hold personal data)."""
    return identity.keyed_hash(external_id, purpose="import-external-id")


# --- checking a file ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """A whole file, read and checked: its records, ready to apply."""

    format: str
    mapping: str
    records: list[ImportRecord]
    ignored: int
    sha256: str


def _purpose_notices() -> dict[str, PurposeNotices]:
    versions: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
    for purpose_id, version, published_at in NoticeVersion.objects.order_by(
        "purpose_id", "version"
    ).values_list("purpose_id", "version", "published_at"):
        versions[purpose_id].append((version, published_at))
    return {
        key: PurposeNotices(key, versions.get(pk, []))
        for pk, key in Purpose.objects.filter(active=True).values_list("pk", "key")
    }


def _sha256(body: IO[bytes]) -> str:
    """The file's SHA-256, read through once; the file is rewound."""
    digest = hashlib.sha256()
    while block := body.read(1024 * 1024):
        digest.update(block)
    body.seek(0)
    return digest.hexdigest()


def import_check(
    *,
    body: IO[bytes],
    fmt: str,
    mapping: str | ImportMapping | None = None,
    now: datetime | None = None,
) -> Checked:
    """Reads and checks the whole file; raises ImportInvalid (400 import_invalid) naming
    every bad row (the first MAX_ROWS_NAMED of them) and why, having written nothing."""
    moment = now or timezone.now()
    if mapping is None and fmt == "jsonld":
        mapping = JSONLD_MAPPING
    loaded = mapping_load(mapping) if isinstance(mapping, str) else mapping
    purposes = _purpose_notices()
    sha256 = _sha256(body)
    records: list[ImportRecord] = []
    problems: list[dict[str, Any]] = []
    bad_rows = ignored = 0
    first_of: dict[str, str] = {}
    for row in rows_read(body, fmt, loaded):
        if row.values is None:
            ignored += 1
            continue
        found = list(row.reasons) or row_check(
            row.values, row=row.number, purposes=purposes, now=moment
        )
        if isinstance(found, ImportRecord):
            label = str(row.number) if row.item is None else f"{row.number} item {row.item}"
            earlier = first_of.setdefault(found.external_id, label)
            if earlier != label:
                found = [f"external_id repeats the one of row {earlier}"]
        if isinstance(found, ImportRecord):
            records.append(found)
            continue
        bad_rows += 1
        if len(problems) < MAX_ROWS_NAMED:
            where: dict[str, Any] = {"row": row.number}
            if row.item is not None:
                where["item"] = row.item
            problems.append({**where, "reasons": found})
    if bad_rows or not records:
        message = (
            f"{bad_rows} rows are invalid; nothing was imported."
            if bad_rows
            else f"The file holds no records to import ({ignored} left out by the mapping)."
        )
        raise ImportInvalid(message, detail={"invalid_rows": bad_rows, "rows": problems})
    return Checked(
        format=fmt,
        mapping=loaded.name if loaded is not None else "",
        records=records,
        ignored=ignored,
        sha256=sha256,
    )


@dataclass(frozen=True)
class DryRun:
    records: int
    ignored: int
    new: int
    already_imported: int


def import_dry_run(checked: Checked) -> DryRun:
    """What applying the file would do, writing nothing."""
    hashes = [external_id_hash(r.external_id) for r in checked.records]
    known = sum(
        ImportedRecord.objects.filter(external_id_hash__in=hashes[i : i + 10_000]).count()
        for i in range(0, len(hashes), 10_000)
    )
    return DryRun(
        records=len(checked.records),
        ignored=checked.ignored,
        new=len(hashes) - known,
        already_imported=known,
    )


# --- recording a checked file ---------------------------------------------------------------
