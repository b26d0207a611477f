"""The chunked delete and anonymise loops behind enforcement, erasure and propagation.

Every chunk is its own short transaction, so a worker killed midway loses only the chunk it
was in (rolled back) and the next run finds the rest by the same predicate. On PostgreSQL,
tables without dependent rows are walked in physical order (ctid ranges): each chunk reads
a contiguous run of pages once, which keeps a chunked purge as fast as one DELETE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from django.db import connections, models, transaction
from django.db.models import Q, QuerySet

from governance.audit import AuditDefinerPurge
from retention.registry import SubjectRef, Target

OnChunk = Callable[[int], None]
Guard = Callable[[], AbstractContextManager[None]] | None


def _guarded(guard: Guard) -> AbstractContextManager[None]:
    return guard() if guard is not None else nullcontext()


def _nothing(_: int) -> None:
    return None


def anonymized_q(values: dict[str, Any]) -> Q:
    q = Q()
    for name, value in values.items():
        q &= Q(**{f"{name}__isnull": True}) if value is None else Q(**{name: value})
    return q


def eligible(
    target: Target, *, cutoff: datetime, condition: dict[str, Any], action: str
) -> QuerySet[Any]:
    """Rows of a model target the policy would act on, before holds."""
    qs = target.model._default_manager.filter(**{f"{target.timestamp_field}__lt": cutoff})
    if target.never_purge:
        qs = qs.exclude(**target.never_purge)
    if condition:
        qs = qs.filter(**condition)
    if action == "anonymize":
        qs = qs.exclude(anonymized_q(target.anonymize))
    return qs


def held_q(target: Target, refs: Iterable[SubjectRef]) -> Q | None:
    if target.subject_q is None:
        return None
    q: Q | None = None
    for ref in refs:
        q = target.subject_q(ref) if q is None else q | target.subject_q(ref)
    return q


def not_held_q(target: Target, refs: Iterable[SubjectRef]) -> Q | None:
    """Rows no held subject owns. Written out rather than `exclude()`: a row naming no
    subject (NULL) must count as not held, where NOT (NULL = key) would drop it."""
    hq = held_q(target, refs)
    if hq is None:
        return None
    q = ~hq
    if target.subject_optional_field:
        q |= Q(**{f"{target.subject_optional_field}__isnull": True})
    return q


def _dependents(model: type[models.Model]) -> list[Any]:
    # Hidden relations (related_name="+") cascade too, so they count.
    return [
        f
        for f in model._meta.get_fields(include_hidden=True)
        if f.auto_created and not f.concrete and (f.one_to_one or f.one_to_many)
    ]


def _physical_order_possible(qs: QuerySet[Any]) -> bool:
    model = qs.model
    if connections[qs.db].vendor != "postgresql":
        return False
    # Raw DELETE would bypass Django's cascades: only for tables nothing points at.
    if _dependents(model):
        return False
    compiler = qs.query.get_compiler(qs.db)
    compiler.compile(qs.query.where)
    # A filter through a relation joins another table: its columns are not in this heap.
    return len(qs.query.alias_map) <= 1


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


ChunkRun = Callable[[Any, str, str], int]


def _statement_chunk(statement: str, params: list[Any], guard: Guard = None) -> ChunkRun:
    """A chunk that runs `statement` (a ctid range placeholder pair first), inside `guard`."""

    def run(cursor: Any, lo: str, hi: str) -> int:
        with _guarded(guard):
            cursor.execute(statement, [lo, hi, *params])
            return int(cursor.rowcount)

    return run


def _ctid_walk(
    *,
    using: str,
    table: str,
    chunk: ChunkRun,
    batch_size: int,
    on_chunk: OnChunk,
) -> int:
    """Runs `chunk` over the whole table, one range of pages per transaction."""
    connection = connections[using]
    with connection.cursor() as cursor:
        pages, per_page = _table_pages(cursor, table)
    step = max(1, int(batch_size / per_page))
    removed = 0
    start = 0
    while start < pages:
        end = start + step
        with transaction.atomic(using=using), connection.cursor() as cursor:
            count = chunk(cursor, f"({start},0)", f"({end},0)")
            # Progress (and the lease) are written in the chunk's own transaction: one
            # commit per chunk, and a lost lease rolls the chunk back.
            on_chunk(count)
        removed += count
        start = end
    return removed


def purge_rows(
    qs: QuerySet[Any],
    *,
    action: str,
    values: dict[str, Any],
    batch_size: int,
    on_chunk: OnChunk = _nothing,
    guard: Guard = None,
    physical_order: bool = True,
    definer: AuditDefinerPurge | None = None,
    cutoff: datetime | None = None,
) -> int:
    """Deletes (or anonymises) every row of `qs`, chunk by chunk. Returns rows changed.

    `guard` is entered inside each deleting chunk's transaction (a guarded table's permit).
    `definer`, on PostgreSQL, deletes each chunk through the table's owner-owned function
    instead (rows older than `cutoff` that `qs` selects); see deleter_for."""
    model: type[models.Model] = qs.model
    using = qs.db
    if definer is not None:
        if action != "delete" or cutoff is None or not _physical_order_possible(qs):
            raise ValueError("A definer purge deletes by age, in physical order, only.")
        return _definer_walk(
            qs, definer=definer, cutoff=cutoff, batch_size=batch_size, on_chunk=on_chunk
        )
    if physical_order and _physical_order_possible(qs):
        connection = connections[using]
        table = connection.ops.quote_name(model._meta.db_table)
        compiler = qs.query.get_compiler(using)
        where, params = compiler.compile(qs.query.where)
        if action == "anonymize":
            sets = []
            set_params: list[Any] = []
            for name, value in values.items():
                field = model._meta.get_field(name)
                column = str(field.column)  # type: ignore[union-attr]
                sets.append(f"{connection.ops.quote_name(column)} = %s")
                set_params.append(field.get_db_prep_save(value, connection))  # type: ignore[union-attr]
            statement = (
                f"UPDATE {table} SET {', '.join(sets)} "  # noqa: S608 - names from the model
                f"WHERE ctid >= %s::tid AND ctid < %s::tid AND ({where})"
            )
            # The range placeholders come first in the statement, the SET values before them.
            return _ctid_walk_update(
                using=using,
                table=table,
                statement=statement,
                set_params=set_params,
                params=list(params),
                batch_size=batch_size,
                on_chunk=on_chunk,
            )
        statement = (
            f"DELETE FROM {table} "  # noqa: S608 - names from the model
            f"WHERE ctid >= %s::tid AND ctid < %s::tid AND ({where})"
        )
        return _ctid_walk(
            using=using,
            table=table,
            chunk=_statement_chunk(statement, list(params), guard),
            batch_size=batch_size,
            on_chunk=on_chunk,
        )
    removed = 0
    label = model._meta.label
    while True:
        with transaction.atomic(using=using):
            pks = list(qs.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not pks:
                break
            if action == "anonymize":
                count = qs.filter(pk__in=pks).update(**values)
            else:
                with _guarded(guard):
                    _, per_model = qs.filter(pk__in=pks).delete()
                count = per_model.get(label, 0)
            on_chunk(count)
        removed += count
        if len(pks) < batch_size:
            break
    return removed


def _definer_walk(
    qs: QuerySet[Any],
    *,
    definer: AuditDefinerPurge,
    cutoff: datetime,
    batch_size: int,
    on_chunk: OnChunk,
) -> int:
    using = qs.db
    connection = connections[using]
    table = connection.ops.quote_name(qs.model._meta.db_table)
    where, params = qs.query.get_compiler(using).compile(qs.query.where)

    def chunk(cursor: Any, lo: str, hi: str) -> int:
        return definer.range_chunk(
            cursor, table=table, lo=lo, hi=hi, where=where, params=params, cutoff=cutoff
        )

    return _ctid_walk(
        using=using, table=table, chunk=chunk, batch_size=batch_size, on_chunk=on_chunk
    )


def deleter_for(target: Target, *, using: str) -> AuditDefinerPurge | None:
    """The owner-owned functions of a guarded table, where the database has them (PostgreSQL):
    the app role's only way past its trigger. None: delete through the ORM and the guard."""
    if target.pg_purge is not None and connections[using].vendor == "postgresql":
        return target.pg_purge
    return None


def subject_delete(target: Target, qs: QuerySet[Any], *, subject_key: str) -> int | None:
    """A person's rows in a guarded table, through its function where there is one; None
    when the caller should delete `qs` itself."""
    definer = deleter_for(target, using=qs.db)
    if definer is None:
        return None
    return definer.subject(subject_key=subject_key, using=qs.db)


def _ctid_walk_update(
    *,
    using: str,
    table: str,
    statement: str,
    set_params: list[Any],
    params: list[Any],
    batch_size: int,
    on_chunk: OnChunk,
) -> int:
    connection = connections[using]
    with connection.cursor() as cursor:
        pages, per_page = _table_pages(cursor, table)
    step = max(1, int(batch_size / per_page))
    changed = 0
    start = 0
    while start < pages:
        end = start + step
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(statement, [*set_params, f"({start},0)", f"({end},0)", *params])
            count = cursor.rowcount
            on_chunk(count)
        changed += count
        start = end
    return changed


# --- external tables (another database alias, plain SQL) -------------------------------


def _names(target: Target) -> tuple[str, str, str]:
    ops = connections[target.database].ops
    assert target.table and target.subject_key_column
    return (
        ops.quote_name(target.table),
        ops.quote_name(target.timestamp_field),
        ops.quote_name(target.subject_key_column),
    )


def external_count(target: Target, *, cutoff: datetime, held_keys: list[str]) -> tuple[int, int]:
    """(rows past the cutoff, of which held)."""
    table, ts, key = _names(target)
    with connections[target.database].cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {key} = ANY(%s)) "  # noqa: S608
            f"FROM {table} WHERE {ts} < %s",
            [held_keys, cutoff],
        )
        total, held = cursor.fetchone()
    return int(total), int(held)


def external_purge(
    target: Target,
    *,
    cutoff: datetime,
    held_keys: list[str],
    batch_size: int,
    on_chunk: OnChunk = _nothing,
) -> int:
    table, ts, key = _names(target)
    statement = (
        f"DELETE FROM {table} WHERE ctid >= %s::tid AND ctid < %s::tid "  # noqa: S608
        f"AND {ts} < %s AND NOT ({key} = ANY(%s))"
    )
    return _ctid_walk(
        using=target.database,
        table=table,
        chunk=_statement_chunk(statement, [cutoff, held_keys]),
        batch_size=batch_size,
        on_chunk=on_chunk,
    )


def external_subject_delete(target: Target, *, subject_key: str) -> int:
    table, _, key = _names(target)
    with (
        transaction.atomic(using=target.database),
        connections[target.database].cursor() as cursor,
    ):
        cursor.execute(f"DELETE FROM {table} WHERE {key} = %s", [subject_key])  # noqa: S608
        return int(cursor.rowcount)


def external_subject_rows(target: Target, *, subject_key: str) -> list[dict[str, Any]]:
    table, ts, key = _names(target)
    with connections[target.database].cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {table} WHERE {key} = %s ORDER BY {ts}",  # noqa: S608
            [subject_key],
        )
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
