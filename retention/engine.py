"""The chunked delete and update loops behind every target's purge.

Every chunk is its own short transaction, so a worker killed midway loses only the chunk it
was in (rolled back) and the next run finds the rest by the same predicate. Two walks, one
interface, picked once per database: the portable one takes chunks by primary key; on
PostgreSQL, tables without dependent rows are walked in physical order (ctid ranges), each
chunk reading a contiguous run of pages once, which keeps a chunked purge as fast as one
DELETE.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.db import connections, models, transaction
from django.db.models import QuerySet

from governance.db import PerDatabase

OnChunk = Callable[[int], None]
Guard = Callable[[], AbstractContextManager[None]] | None
# Runs one chunk over the ctid range [lo, hi) on the cursor; returns the rows it changed.
ChunkRun = Callable[[Any, str, str], int]


def _guarded(guard: Guard) -> AbstractContextManager[None]:
    return guard() if guard is not None else nullcontext()


def _nothing(_: int) -> None:
    return None


class KeyOrderWalk:
    """Portable: chunks of primary keys, deleted through the ORM (cascades included)."""

    def delete(self, qs: QuerySet[Any], *, batch_size: int, on_chunk: OnChunk, guard: Guard) -> int:
        label = qs.model._meta.label

        def chunk(pks: list[Any]) -> int:
            with _guarded(guard):
                _, per_model = qs.filter(pk__in=pks).delete()
            return per_model.get(label, 0)

        return self._walk(qs, chunk, batch_size=batch_size, on_chunk=on_chunk)

    def update(
        self, qs: QuerySet[Any], *, values: dict[str, Any], batch_size: int, on_chunk: OnChunk
    ) -> int:
        return self._walk(
            qs,
            lambda pks: qs.filter(pk__in=pks).update(**values),
            batch_size=batch_size,
            on_chunk=on_chunk,
        )

    @staticmethod
    def _walk(
        qs: QuerySet[Any],
        chunk: Callable[[list[Any]], int],
        *,
        batch_size: int,
        on_chunk: OnChunk,
    ) -> int:
        changed = 0
        while True:
            with transaction.atomic(using=qs.db):
                pks = list(qs.order_by("pk").values_list("pk", flat=True)[:batch_size])
                if not pks:
                    break
                count = chunk(pks)
                on_chunk(count)
            changed += count
            if len(pks) < batch_size:
                break
        return changed


class PhysicalOrderWalk(KeyOrderWalk):
    """PostgreSQL: ctid ranges, where a raw statement may stand in for the ORM (the table has
    no dependent rows whose cascade it would bypass, the filter joins no other table)."""

    def delete(self, qs: QuerySet[Any], *, batch_size: int, on_chunk: OnChunk, guard: Guard) -> int:
        if not physical_order_possible(qs):
            return super().delete(qs, batch_size=batch_size, on_chunk=on_chunk, guard=guard)
        return self._ranges(
            qs,
            lambda table: f"DELETE FROM {table}",  # noqa: S608 - names from the model
            [],
            batch_size=batch_size,
            on_chunk=on_chunk,
            guard=guard,
        )

    def update(
        self, qs: QuerySet[Any], *, values: dict[str, Any], batch_size: int, on_chunk: OnChunk
    ) -> int:
        if not physical_order_possible(qs):
            return super().update(qs, values=values, batch_size=batch_size, on_chunk=on_chunk)
        connection = connections[qs.db]
        sets = []
        set_params: list[Any] = []
        for name, value in values.items():
            field = qs.model._meta.get_field(name)
            column = str(field.column)  # type: ignore[union-attr]
            sets.append(f"{connection.ops.quote_name(column)} = %s")
            set_params.append(field.get_db_prep_save(value, connection))  # type: ignore[union-attr]
        return self._ranges(
            qs,
            lambda table: f"UPDATE {table} SET {', '.join(sets)}",  # noqa: S608 - from the model
            set_params,
            batch_size=batch_size,
            on_chunk=on_chunk,
        )

    @staticmethod
    def _ranges(
        qs: QuerySet[Any],
        head: Callable[[str], str],
        before: list[Any],
        *,
        batch_size: int,
        on_chunk: OnChunk,
        guard: Guard = None,
    ) -> int:
        """Runs the statement `head(table)` begins over every ctid range, restricted to the
        rows of `qs`; `before` are the parameters of `head` (an UPDATE's SET values)."""
        table, where, params = compiled(qs)
        statement = f"{head(table)} WHERE ctid >= %s::tid AND ctid < %s::tid AND ({where})"
        return ctid_walk(
            using=qs.db,
            table=table,
            chunk=statement_chunk(statement, params, guard=guard, before=before),
            batch_size=batch_size,
            on_chunk=on_chunk,
        )


walk: PerDatabase[KeyOrderWalk] = PerDatabase(
    postgresql=PhysicalOrderWalk(), portable=KeyOrderWalk()
)


def purge_rows(
    qs: QuerySet[Any],
    *,
    action: str,
    values: dict[str, Any],
    batch_size: int,
    on_chunk: OnChunk = _nothing,
    guard: Guard = None,
) -> int:
    """Deletes (or anonymises, setting `values`) every row of `qs`, chunk by chunk; returns
    the rows changed. `guard` is entered inside each deleting chunk's transaction (a guarded
    table's permit)."""
    walker = walk(qs.db)
    if action == "anonymize":
        return walker.update(qs, values=values, batch_size=batch_size, on_chunk=on_chunk)
    return walker.delete(qs, batch_size=batch_size, on_chunk=on_chunk, guard=guard)


def _dependents(model: type[models.Model]) -> list[Any]:
    # Hidden relations (related_name="+") cascade too, so they count.
    return [
        f
        for f in model._meta.get_fields(include_hidden=True)
        if f.auto_created and not f.concrete and (f.one_to_one or f.one_to_many)
    ]


def physical_order_possible(qs: QuerySet[Any]) -> bool:
    """Whether a raw statement over ctid ranges may replace the ORM for `qs` (PostgreSQL)."""
    # Raw DELETE would bypass Django's cascades: only for tables nothing points at.
    if _dependents(qs.model):
        return False
    qs.query.get_compiler(qs.db).compile(qs.query.where)
    # A filter through a relation joins another table: its columns are not in this heap.
    return len(qs.query.alias_map) <= 1


def compiled(qs: QuerySet[Any]) -> tuple[str, str, list[Any]]:
    """The quoted table, and the WHERE clause of `qs` with its parameters."""
    table = connections[qs.db].ops.quote_name(qs.model._meta.db_table)
    where, params = qs.query.get_compiler(qs.db).compile(qs.query.where)
    return table, where, list(params)


def _table_pages(cursor: Any, table: str) -> tuple[int, float]:
    cursor.execute(
        "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int, "
        "reltuples, relpages FROM pg_class WHERE oid = %s::regclass",
        [table, table],
    )
    pages, reltuples, relpages = cursor.fetchone()
    if relpages and reltuples and reltuples > 0:
        per_page = reltuples / relpages
    else:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - quoted name
        count = cursor.fetchone()[0]
        per_page = count / pages if pages else 1.0
    return int(pages), max(per_page, 1.0)


def statement_chunk(
    statement: str, params: list[Any], *, guard: Guard = None, before: list[Any] | None = None
) -> ChunkRun:
    """A chunk that runs `statement` inside `guard`: its parameters are `before` (an UPDATE's
    SET values), the ctid range pair, then `params`."""

    def run(cursor: Any, lo: str, hi: str) -> int:
        with _guarded(guard):
            cursor.execute(statement, [*(before or []), lo, hi, *params])
            return int(cursor.rowcount)

    return run


def ctid_walk(
    *,
    using: str,
    table: str,
    chunk: ChunkRun,
    batch_size: int,
    on_chunk: OnChunk = _nothing,
) -> int:
    """PostgreSQL: runs `chunk` over the whole table, one range of pages per transaction."""
    connection = connections[using]
    with connection.cursor() as cursor:
        pages, per_page = _table_pages(cursor, table)
    step = max(1, int(batch_size / per_page))
    changed = 0
    start = 0
    while start < pages:
        end = start + step
        with transaction.atomic(using=using), connection.cursor() as cursor:
            count = chunk(cursor, f"({start},0)", f"({end},0)")
            # Progress (and the lease) are written in the chunk's own transaction: one
            # commit per chunk, and a lost lease rolls the chunk back.
            on_chunk(count)
        changed += count
        start = end
    return changed
