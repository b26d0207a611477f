"""Reading a usage upload: NDJSON `{"pseudonym": "<64 lowercase hex>"}` lines, or a Parquet
file with a `pseudonym` column (binary(32), or the same hex as strings). The body is
spooled to a temporary file first (pseudonyms only: no identifier is ever sent)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consent.snapshots.files import MEDIA_TYPE, PSEUDONYM
from governance.errors import InvalidRequest, PayloadTooLarge

NDJSON = "application/x-ndjson"
MEDIA_TYPES = (NDJSON, MEDIA_TYPE)
# 10 million NDJSON lines of 80 bytes; a Parquet file of as many is a third of it.
MAX_BODY_BYTES = 1024 * 1024 * 1024
_HEX = re.compile(r"[0-9a-f]{64}")
_BATCH = 100_000


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


def pseudonyms_ndjson(body: IO[bytes]) -> pa.Array:
    """Every pseudonym of the NDJSON lines (blank lines skipped), as binary(32)."""
    batches: list[pa.Array] = []
    batch: list[bytes] = []
    for number, raw in enumerate(body, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise _bad(f"Line {number} is not JSON.", line=number) from exc
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
    return pa.chunked_array(batches, PSEUDONYM).combine_chunks()


def pseudonyms_parquet(body: IO[bytes]) -> pa.Array:
    """The `pseudonym` column of a Parquet upload, as binary(32)."""
    try:
        column = pq.read_table(pa.PythonFile(body, mode="r"), columns=["pseudonym"])["pseudonym"]
    except (pa.ArrowException, KeyError) as exc:
        raise _bad("Expected a Parquet file with a pseudonym column.") from exc
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
