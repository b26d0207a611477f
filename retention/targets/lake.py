"""A Delta table in the lake (delta-rs through `deltalake`, no JVM), its rows naming their
subject by the plaintext identifier or by the keyed hash.

Rows go through a merge against an Arrow table of ids (`when_matched_delete`): the predicate
names columns only, so no identifier is ever parsed as SQL nor written into the table's
commit log; a rectification's re-key is a merge too (`when_matched_update`). A removal or a
re-key leaves the old data files (and log entries whose statistics may hold ids) on storage
for readers already under way; `settle` deletes them once LAKEHOUSE_VACUUM_HOURS have passed:
a vacuum, then a checkpoint and a log cleanup.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import deltalake
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake.exceptions import TableNotFoundError
from deltalake.fs import DeltaStorageHandler
from django.conf import settings
from django.utils import timezone

from consent import identity
from retention.targets.base import Progress, SubjectRef, Sweep, Tally, Target


class IdKind:
    IDENTIFIER = "identifier"
    SUBJECT_KEY = "subject_key"


def quoted(column: str) -> str:
    """A column name as delta-rs's SQL reads it (the names come from the configuration)."""
    return "`" + column.replace("`", "``") + "`"


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True, kw_only=True)
class DeltaTable(Target):
    takes_condition: ClassVar[bool] = False
    # Ids per merge: each merge is one commit that rewrites every file holding a match.
    default_batch_size: ClassVar[int] = 100_000

    uri: str
    id_column: str
    id_kind: str = IdKind.SUBJECT_KEY
    serves: tuple[str, ...] = ()
    namespace: str = "account"
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def holds_personal_data(self) -> bool:
        return True

    @property
    def purposes(self) -> tuple[str, ...]:
        return self.serves

    @property
    def settle_after(self) -> timedelta:
        return timedelta(hours=max(0, int(settings.LAKEHOUSE_VACUUM_HOURS)))

    # --- reading -----------------------------------------------------------------------

    def _open(self) -> deltalake.DeltaTable | None:
        """The table at its latest version; None while nobody has written it yet."""
        try:
            return deltalake.DeltaTable(self.uri, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def _key_of(self, value: str) -> str:
        return value if self.id_kind == IdKind.SUBJECT_KEY else identity.subject_key(value)

    def _subject_ids(self, table: deltalake.DeltaTable, ref: SubjectRef) -> list[str]:
        """The id column's values that name `ref`. An identifier-keyed table without the
        plaintext at hand (an access export, an erasure replayed after the identifier was
        destroyed) is matched by hashing its distinct ids."""
        if ref.namespace != self.namespace:
            return []
        if self.id_kind == IdKind.SUBJECT_KEY:
            return [ref.key]
        if ref.identifier is not None:
            return [ref.identifier]
        column = table.to_pyarrow_dataset().to_table(columns=[self.id_column])[self.id_column]
        return [v for v in pc.unique(column).drop_null().to_pylist() if self._key_of(v) == ref.key]

    def _cutoff(self, table: deltalake.DeltaTable, cutoff: datetime) -> pa.Scalar:
        kind = table.to_pyarrow_dataset().schema.field(self.timestamp_field).type
        if pa.types.is_date(kind):
            return pa.scalar(cutoff.astimezone(UTC).date(), type=kind)
        if pa.types.is_timestamp(kind) and kind.tz is None:
            # A timestamp without zone (timestamp_ntz) is read as UTC.
            return pa.scalar(cutoff.astimezone(UTC).replace(tzinfo=None), type=kind)
        return pa.scalar(cutoff, type=kind)

    def _expired(self, table: deltalake.DeltaTable, sweep: Sweep) -> tuple[pa.Table, pa.Scalar]:
        """The id and timestamp of every row older than the sweep's cutoff."""
        cutoff = self._cutoff(table, sweep.cutoff)
        rows = table.to_pyarrow_dataset().to_table(
            columns=[self.id_column, self.timestamp_field],
            filter=ds.field(self.timestamp_field) < cutoff,
        )
        return rows, cutoff

    def _held(self, column: pa.ChunkedArray, sweep: Sweep) -> tuple[list[str], set[str], int]:
        """The distinct ids of `column`, those a hold keeps, and how many rows they have."""
        ids = pc.unique(column).drop_null().to_pylist()
        keys = set(sweep.held_keys)
        held = {v for v in ids if self._key_of(v) in keys} if keys else set()
        if not held:
            return ids, held, 0
        rows = pc.sum(pc.is_in(column, value_set=pa.array(sorted(held), column.type))).as_py()
        return ids, held, int(rows or 0)

    # --- removing ------------------------------------------------------------------------

    def _writer(self) -> deltalake.WriterProperties:
        # Files the merges rewrite (removals and re-keys) keep no Parquet statistics for the
        # id column.
        return deltalake.WriterProperties(
            column_properties={
                self.id_column: deltalake.ColumnProperties(statistics_enabled="NONE")
            }
        )

    def _merge_delete(self, table: deltalake.DeltaTable, source: pa.Table, predicate: str) -> int:
        metrics = (
            table.merge(
                source,
                predicate=predicate,
                source_alias="s",
                target_alias="t",
                writer_properties=self._writer(),
            )
            .when_matched_delete()
            .execute()
        )
        return int(metrics.get("num_target_rows_deleted", 0))

    def _id_array(self, table: deltalake.DeltaTable, ids: list[str]) -> pa.Array:
        kind = table.to_pyarrow_dataset().schema.field(self.id_column).type
        return pa.array(ids, type=kind)

    def count(self, sweep: Sweep) -> Tally:
        table = self._open()
        if table is None:
            return Tally(examined=0, held=0)
        rows, _ = self._expired(table, sweep)
        _, _, held_rows = self._held(rows[self.id_column], sweep)
        return Tally(examined=rows.num_rows, held=held_rows)

    def purge(self, sweep: Sweep, progress: Progress) -> Tally:
        table = self._open()
        if table is None:
            return Tally(examined=0, held=0)
        rows, cutoff = self._expired(table, sweep)
        column = rows[self.id_column]
        ids, held, held_rows = self._held(column, sweep)
        going = [v for v in ids if v not in held]
        id_col, ts_col = quoted(self.id_column), quoted(self.timestamp_field)
        removed = 0
        for chunk in _chunks(going, sweep.batch_size):
            source = pa.table(
                {
                    "id": self._id_array(table, chunk),
                    "cutoff": pa.array([cutoff.as_py()] * len(chunk), cutoff.type),
                }
            )
            count = self._merge_delete(
                table, source, f"t.{id_col} = s.id AND t.{ts_col} < s.cutoff"
            )
            removed += count
            progress.chunk(count)
        if column.null_count:
            # Rows naming nobody: no hold can keep them.
            source = pa.table({"cutoff": pa.array([cutoff.as_py()], cutoff.type)})
            count = self._merge_delete(
                table, source, f"t.{id_col} IS NULL AND t.{ts_col} < s.cutoff"
            )
            removed += count
            progress.chunk(count)
        return Tally(examined=rows.num_rows, held=held_rows, removed=removed)

    def subject_remove(
        self, ref: SubjectRef, *, action: str, erasure: bool = False, batch_size: int = 1000
    ) -> int:
        table = self._open()
        if table is None:
            return 0
        ids = self._subject_ids(table, ref)
        if not ids:
            return 0
        source = pa.table({"id": self._id_array(table, ids)})
        return self._merge_delete(table, source, f"t.{quoted(self.id_column)} = s.id")

    def subject_rows(self, ref: SubjectRef) -> list[dict[str, Any]]:
        table = self._open()
        if table is None:
            return []
        ids = self._subject_ids(table, ref)
        if not ids:
            return []
        rows = table.to_pyarrow_dataset().to_table(
            filter=ds.field(self.id_column).isin(self._id_array(table, ids))
        )
        return sorted(rows.to_pylist(), key=lambda r: str(r.get(self.timestamp_field)))

    # --- re-keying -----------------------------------------------------------------------

    def subject_rekey(
        self, ref: SubjectRef, *, new_key: str, new_identifier: str | None = None
    ) -> int:
        """After an identifier rectification, the rows naming `ref` name the subject anew: by
        `new_key`, or in a table keyed by the identifier, by `new_identifier` (the rows found
        by hashing the distinct ids, the old identifier being kept nowhere). One merge against
        an Arrow table of (old, new) pairs, so neither id is ever read as SQL nor written into
        the commit log; the files it replaces, which still hold the old ids, go at the next
        `settle` past the vacuum delay, as a removal's do."""
        table = self._open()
        if table is None:
            return 0
        if self.id_kind == IdKind.SUBJECT_KEY:
            new = new_key
        elif new_identifier is not None and identity.subject_key(new_identifier) == new_key:
            new = new_identifier
        else:
            raise ValueError(f"{self.name} is keyed by the identifier: re-keying needs the new one")
        old = [v for v in self._subject_ids(table, ref) if v != new]
        if not old:
            return 0
        source = pa.table(
            {"old": self._id_array(table, old), "new": self._id_array(table, [new] * len(old))}
        )
        column = quoted(self.id_column)
        metrics = (
            table.merge(
                source,
                predicate=f"t.{column} = s.old",
                source_alias="s",
                target_alias="t",
                writer_properties=self._writer(),
            )
            .when_matched_update({column: "s.new"})
            .execute()
        )
        return int(metrics.get("num_target_rows_updated", 0))

    # --- settling ------------------------------------------------------------------------

    def settle(self, *, now: datetime, erasure: bool = False) -> int:
        table = self._open()
        if table is None:
            return 0
        # The vacuum counts back from the wall clock: a `now` ahead of it (a run told the
        # time, as tests do) shortens the wait by as much; never lengthens it past the delay.
        ahead = max(0.0, (now - timezone.now()).total_seconds())
        hours = max(0, math.ceil((self.settle_after.total_seconds() - ahead) / 3600))

        def vacuum(*, dry_run: bool) -> list[str]:
            # Delta refuses a retention under the table's own (a week by default) unless
            # told: the delay is ours, LAKEHOUSE_VACUUM_HOURS.
            return table.vacuum(
                retention_hours=hours, enforce_retention_duration=False, dry_run=dry_run
            )

        # The vacuum names every tombstone past the delay, deleted before or not (the log
        # keeps tombstones a week): only those still on storage count.
        present = self._present(vacuum(dry_run=True))
        vacuum(dry_run=False)
        if present or erasure:
            self._history_cut(table)
        return present

    def _storage(self) -> pafs.FileSystem:
        """The table's storage, paths relative to its root (delta-rs's own object store)."""
        return pafs.PyFileSystem(
            DeltaStorageHandler(self.uri, options=self.storage_options or None)
        )

    def _present(self, paths: list[str]) -> int:
        """How many of `paths` (relative to the table, or absolute) are files on storage."""
        if not paths:
            return 0
        root = self.uri.rstrip("/") + "/"
        relative = [p.removeprefix(root) for p in paths]
        infos = self._storage().get_file_info(relative)
        return sum(1 for info in infos if info.type == pafs.FileType.File)

    def _history_cut(self, table: deltalake.DeltaTable) -> None:
        """Drops every log entry before a new checkpoint: older entries still carry the
        statistics (min and max, so ids) of files the vacuum deleted, and time travel to
        them would name the people removed.

        What `cleanup_metadata` does with the log retention at zero, without the two
        metadata commits that changing the retention would take (a metadata commit fails
        a concurrent writer's append)."""
        table.create_checkpoint()
        checkpoint = table.version()
        storage = self._storage()
        for info in storage.get_file_info(pafs.FileSelector("_delta_log")):
            head = info.base_name.split(".", 1)[0]
            if info.type == pafs.FileType.File and head.isdigit() and int(head) < checkpoint:
                storage.delete_file(info.path)
