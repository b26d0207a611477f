"""Reading a usage upload: NDJSON `{"pseudonym": "<64 lowercase hex>"}` lines, or a Parquet
file with a `pseudonym` column (binary(32), or the same hex as strings). The body is
spooled to a temporary file first (pseudonyms only: no identifier is ever sent). A consent
skew report computed by the pipeline may come along: one NDJSON line `{"skew": {...}}`, or
the Parquet schema's metadata under `consent.skew` (JSON): the aggregate only."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from typing import IO, Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consent.errors import InvalidSkew
from consent.snapshots.files import MEDIA_TYPE, PSEUDONYM
from governance.errors import InvalidRequest, PayloadTooLarge

NDJSON = "application/x-ndjson"
MEDIA_TYPES = (NDJSON, MEDIA_TYPE)
# 10 million NDJSON lines of 80 bytes; a Parquet file of as many is a third of it.
MAX_BODY_BYTES = 1024 * 1024 * 1024
_HEX = re.compile(r"[0-9a-f]{64}")
_BATCH = 100_000
SKEW_METADATA_KEY = b"consent.skew"


class Usage(NamedTuple):
    pseudonyms: pa.Array
    skew: Any  # as sent (None: none), checked by consent.skew.skew_validate


def spool(blocks: Iterable[bytes], limit: int = MAX_BODY_BYTES) -> IO[bytes]:
    """The body in a temporary file (in memory up to 8 MiB), rewound."""
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    size = 0
    for block in blocks:
        size += len(block)
        if size > limit:
            out.close()
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
        out.write(block)
    out.seek(0)
    return out


def _bad(message: str, **detail: Any) -> InvalidRequest:
    return InvalidRequest(message, detail={"field": "pseudonym", **detail})


def pseudonyms_ndjson(body: IO[bytes]) -> Usage:
    """Every pseudonym of the NDJSON lines (blank lines skipped), as binary(32), and the
    skew line's report if there is one."""
    batches: list[pa.Array] = []
    batch: list[bytes] = []
    skew: Any = None
    for number, raw in enumerate(body, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise _bad(f"Line {number} is not JSON.", line=number) from exc
        if isinstance(item, dict) and set(item) == {"skew"} and skew is None:
            skew = item["skew"]
            continue
        value = item.get("pseudonym") if isinstance(item, dict) else None
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise _bad(
                f'Line {number}: expected {{"pseudonym": "<64 lowercase hex characters>"}}.',
                line=number,
            )
        batch.append(bytes.fromhex(value))
        if len(batch) >= _BATCH:
            batches.append(pa.array(batch, PSEUDONYM))
            batch = []
    batches.append(pa.array(batch, PSEUDONYM))
    return Usage(pa.chunked_array(batches, PSEUDONYM).combine_chunks(), skew)


def pseudonyms_parquet(body: IO[bytes]) -> Usage:
    """The `pseudonym` column of a Parquet upload, as binary(32), and the skew report of
    the schema's metadata if there is one."""
    try:
        table = pq.read_table(pa.PythonFile(body, mode="r"), columns=["pseudonym"])
        column = table["pseudonym"]
    except (pa.ArrowException, KeyError) as exc:
        raise _bad("Expected a Parquet file with a pseudonym column.") from exc
    raw = (table.schema.metadata or {}).get(SKEW_METADATA_KEY)
    try:
        skew = json.loads(raw) if raw is not None else None
    except ValueError as exc:
        raise InvalidSkew("The consent.skew metadata is not JSON.") from exc
    return Usage(_pseudonym_column(column), skew)


def _pseudonym_column(column: Any) -> pa.Array:
    if column.null_count:
        raise _bad("The pseudonym column holds nulls.")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        valid = pc.all(pc.match_substring_regex(column, r"^[0-9a-f]{64}$")).as_py()
        if valid is False:
            raise _bad("Pseudonyms given as strings must be 64 lowercase hex characters.")
        return pa.array([bytes.fromhex(v) for v in column.to_pylist()], PSEUDONYM)
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        lengths = pc.binary_length(column)
        if column and not pc.all(pc.equal(lengths, 32)).as_py():
            raise _bad("Binary pseudonyms must be 32 bytes long.")
        return column.cast(PSEUDONYM).combine_chunks()
    if column.type == PSEUDONYM:
        return column.combine_chunks()
    raise _bad(f"Unsupported pseudonym column type {column.type}.")
