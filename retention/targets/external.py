"""A table in a configured external database (PostgreSQL): plain SQL on another alias, rows
naming their subject by the HMAC-SHA256 subject key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from django.db import connections, transaction

from retention import engine
from retention.targets.base import Progress, SubjectRef, Sweep, Tally, Target


@dataclass(frozen=True, kw_only=True)
class ExternalTable(Target):
    takes_condition: ClassVar[bool] = False

    database: str
    table: str
    subject_key_column: str

    @property
    def holds_personal_data(self) -> bool:
        return True

    def _names(self) -> tuple[str, str, str]:
        quote = connections[self.database].ops.quote_name
        return quote(self.table), quote(self.timestamp_field), quote(self.subject_key_column)

    def count(self, sweep: Sweep) -> Tally:
        table, ts, key = self._names()
        with connections[self.database].cursor() as cursor:
            cursor.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {key} = ANY(%s)) "  # noqa: S608
                f"FROM {table} WHERE {ts} < %s",
                [sweep.held_keys, sweep.cutoff],
            )
            total, held = cursor.fetchone()
        return Tally(examined=int(total), held=int(held))

    def purge(self, sweep: Sweep, progress: Progress) -> Tally:
        tally = self.count(sweep)
        table, ts, key = self._names()
        statement = (
            f"DELETE FROM {table} WHERE ctid >= %s::tid AND ctid < %s::tid "  # noqa: S608
            f"AND {ts} < %s AND NOT ({key} = ANY(%s))"
        )
        removed = engine.ctid_walk(
            using=self.database,
            table=table,
            chunk=engine.statement_chunk(statement, [sweep.cutoff, sweep.held_keys]),
            batch_size=sweep.batch_size,
            on_chunk=progress.chunk,
        )
        return Tally(examined=tally.examined, held=tally.held, removed=removed)

    def subject_remove(
        self, ref: SubjectRef, *, action: str, erasure: bool = False, batch_size: int = 1000
    ) -> int:
        table, _, key = self._names()
        with (
            transaction.atomic(using=self.database),
            connections[self.database].cursor() as cursor,
        ):
            cursor.execute(f"DELETE FROM {table} WHERE {key} = %s", [ref.key])  # noqa: S608
            return int(cursor.rowcount)

    def subject_rekey(
        self, ref: SubjectRef, *, new_key: str, new_identifier: str | None = None
    ) -> int:
        table, _, key = self._names()
        with (
            transaction.atomic(using=self.database),
            connections[self.database].cursor() as cursor,
        ):
            cursor.execute(
                f"UPDATE {table} SET {key} = %s WHERE {key} = %s",  # noqa: S608
                [new_key, ref.key],
            )
            return int(cursor.rowcount)

    def subject_rows(self, ref: SubjectRef) -> list[dict[str, Any]]:
        table, ts, key = self._names()
        with connections[self.database].cursor() as cursor:
            cursor.execute(
                f"SELECT * FROM {table} WHERE {key} = %s ORDER BY {ts}",  # noqa: S608
                [ref.key],
            )
            columns = [c[0] for c in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
