"""A snapshot's files under SNAPSHOT_DIR/<id>/: each chunk's part, then the two files the
parts are assembled into.

- `snapshot.parquet`, the file clients download: `pseudonym` (binary(32)), `allowed`,
  `reason`.
- `index.parquet`, the service's own: `pseudonym`, `allowed` and the subject row's id, so a
  usage upload finds the people it names without recomputing every pseudonym. It holds no
  identifier and goes with the snapshot.

Every file is written under a temporary name and renamed, so a reader never sees half a
file and a chunk written twice (a worker that lost its lease) is simply replaced.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

PSEUDONYM = pa.binary(32)
PART_SCHEMA = pa.schema(
    [
        pa.field("pseudonym", PSEUDONYM, nullable=False),
        pa.field("allowed", pa.bool_(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("subject_pk", pa.int64(), nullable=False),
    ]
)
PUBLIC_COLUMNS = ["pseudonym", "allowed", "reason"]
INDEX_COLUMNS = ["pseudonym", "allowed", "subject_pk"]
MEDIA_TYPE = "application/vnd.apache.parquet"


def snapshot_dir(snapshot_id: uuid.UUID | str) -> Path:
    return Path(settings.SNAPSHOT_DIR) / str(snapshot_id)


def public_path(snapshot_id: uuid.UUID | str) -> Path:
    return snapshot_dir(snapshot_id) / "snapshot.parquet"


def index_path(snapshot_id: uuid.UUID | str) -> Path:
    return snapshot_dir(snapshot_id) / "index.parquet"


def _part_path(snapshot_id: uuid.UUID | str, index: int) -> Path:
    return snapshot_dir(snapshot_id) / "parts" / f"part-{index:06d}.parquet"


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def part_write(snapshot_id: uuid.UUID | str, index: int, table: pa.Table) -> None:
    """Writes one chunk's rows (PART_SCHEMA), replacing any earlier copy."""
    path = _part_path(snapshot_id, index)
    tmp = _temporary(path)
    pq.write_table(table.cast(PART_SCHEMA), tmp)
    os.replace(tmp, path)


def _parts(snapshot_id: uuid.UUID | str, count: int) -> Iterator[pa.Table]:
    for index in range(count):
        yield pq.read_table(_part_path(snapshot_id, index))


def assemble(snapshot_id: uuid.UUID | str, parts: int) -> str:
    """Joins the parts, in order, into the public file and the index, one part in memory at
    a time; returns the public file's SHA-256 (hex)."""
    public, index = public_path(snapshot_id), index_path(snapshot_id)
    public_tmp, index_tmp = _temporary(public), _temporary(index)
    schema = PART_SCHEMA
    with (
        pq.ParquetWriter(public_tmp, pa.schema([schema.field(c) for c in PUBLIC_COLUMNS])) as out,
        pq.ParquetWriter(index_tmp, pa.schema([schema.field(c) for c in INDEX_COLUMNS])) as idx,
    ):
        for table in _parts(snapshot_id, parts):
            if table.num_rows:
                out.write_table(table.select(PUBLIC_COLUMNS))
                idx.write_table(table.select(INDEX_COLUMNS))
    digest = file_sha256(public_tmp)
    os.replace(index_tmp, index)
    os.replace(public_tmp, public)
    shutil.rmtree(snapshot_dir(snapshot_id) / "parts", ignore_errors=True)
    return digest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def index_read(snapshot_id: uuid.UUID | str) -> pa.Table:
    return pq.read_table(index_path(snapshot_id))


def remove(snapshot_id: uuid.UUID | str) -> bool:
    """Deletes every file of the snapshot; True if there was something to delete."""
    directory = snapshot_dir(snapshot_id)
    if not directory.exists():
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def stored_ids() -> list[str]:
    """The snapshot ids that have a directory under SNAPSHOT_DIR."""
    root = Path(settings.SNAPSHOT_DIR)
    if not root.is_dir():
        return []
    return [p.name for p in root.iterdir() if p.is_dir()]
