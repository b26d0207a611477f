"""PostgreSQL for the hot paths: prepared statements, and one statement for a whole write.

`server_cursor` runs fixed statements prepared once per connection (the API key lookup,
the consent write's lock and reads). `Statement` turns unsaved model instances into the
data-modifying CTEs of a single `WITH ... SELECT 1`: the consent write (proof context,
ledger event, state, subject chain head, outbox and audit rows) costs one round trip
instead of one ORM call per row. Column lists and value conversion come from the models'
own fields, so a migration that adds a column is picked up here without an edit.
PostgreSQL only: SQLite has no data-modifying CTEs, and the embedded default keeps the ORM.

`PerDatabase` is how a PostgreSQL fast path sits beside its portable twin: one interface,
two implementations, picked once per database alias. It holds the project's one `vendor`
check; services and engines never write their own.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any, Generic, TypeVar, cast

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model, signals
from django.db.models.base import ModelState

T = TypeVar("T")


M = TypeVar("M", bound=Model)


def unsaved(model: type[M], related: Mapping[str, Model | None], /, **values: Any) -> M:
    """An unsaved instance made from its attribute values (`subject_id`, not `subject`),
    the way a loaded row is made but without Model.__init__'s work per field: for rows a
    hot path makes by the thousand (ledger events and states). `values` must name every
    concrete field (no default is applied); `related` holds the objects behind foreign keys
    (by field name), as the ordinary constructor caches them. A model with init signal
    receivers gets the ordinary constructor."""
    # The receivers' lists first: empty (as they are here), no lookup per model and call.
    if (signals.pre_init.receivers or signals.post_init.receivers) and (
        signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model)
    ):
        obj = model(**values)
        for name, value in related.items():
            setattr(obj, name, value)
        return obj
    obj = model.__new__(model)
    obj._state = ModelState()
    obj._state.fields_cache = dict(related)
    obj.__dict__.update(values)
    return obj


class PerDatabase(Generic[T]):
    """One interface, two implementations: `postgresql` on PostgreSQL, `portable` elsewhere
    (SQLite, the embedded default). Picked the first time an alias asks, then kept: a
    database alias does not change vendor while the process runs."""

    def __init__(self, *, postgresql: T, portable: T) -> None:
        self.postgresql = postgresql
        self.portable = portable
        self._picked: dict[str, T] = {}

    def __call__(self, using: str = DEFAULT_DB_ALIAS) -> T:
        picked = self._picked.get(using)
        if picked is None:
            is_postgresql = connections[using].vendor == "postgresql"
            picked = self.postgresql if is_postgresql else self.portable
            self._picked[using] = picked
        return picked


def _json_default(value: Any) -> Any:
    """A value json cannot write as it is, as JSON that PostgreSQL's input function for the
    column reads back exactly (timestamps keep their microseconds: the ledger's hashes
    cover them)."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    raise TypeError(f"no JSON for {type(value).__name__}")


@dataclass(frozen=True)
class _Shape:
    """How an instance's row is read: columns and attributes as they are, and the fields
    that fill themselves in (auto_now, auto_now_add) through pre_save."""

    columns: tuple[str, ...]
    attnames: tuple[str, ...]
    filled: tuple[Field[Any, Any], ...]

    def values(self, obj: Model) -> list[Any]:
        values = list(map(obj.__dict__.__getitem__, self.attnames))
        for f in self.filled:
            values[self.columns.index(f.column)] = f.pre_save(obj, add=True)
        return values

    def row(self, obj: Model) -> dict[str, Any]:
        # zip and map stay in C: this runs for every row of every write.
        row = dict(zip(self.columns, map(obj.__dict__.__getitem__, self.attnames), strict=True))
        for f in self.filled:
            row[f.column] = f.pre_save(obj, add=True)
        return row


@lru_cache(maxsize=64)
def _insert_sql(
    model: type[Model],
    with_pk: bool,
    expressions: tuple[tuple[str, str], ...],
    on_conflict: str,
) -> tuple[str, _Shape]:
    """The INSERT's text and how each column's value is read, built once per shape (this
    is the hot path)."""
    meta = model._meta
    fields = [f for f in meta.concrete_fields if with_pk or not f.primary_key]
    quote = connection.ops.quote_name
    override = dict(expressions)
    columns = ", ".join(quote(f.column) for f in fields)
    values = ", ".join(override.get(f.column, f"r.{quote(f.column)}") for f in fields)
    table = quote(meta.db_table)
    # Identifiers come from the model's meta, values are one parameter: nothing from input.
    sql = (
        f"INSERT INTO {table} AS t ({columns}) SELECT {values}"  # noqa: S608
        f" FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb) WITH ORDINALITY AS r"
    )
    filled = tuple(
        f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    )
    shape = _Shape(
        columns=tuple(f.column for f in fields),
        attnames=tuple(f.attname for f in fields),
        filled=filled,
    )
    return (f"{sql} {on_conflict}" if on_conflict else sql), shape


@lru_cache(maxsize=16)
def _unnest_sql(model: type[Model], with_pk: bool, on_conflict: str) -> tuple[str, _Shape]:
    """Statement.insert_columns' INSERT: one array parameter a column, cast to its type."""
    _, shape = _insert_sql(model, with_pk, (), "")
    fields = {f.column: f for f in model._meta.concrete_fields}
    quote = connection.ops.quote_name
    arrays = ", ".join(
        f"%s::{(fields[c].db_type(connection) or 'text').split('(')[0]}[]" for c in shape.columns
    )
    # Identifiers and types come from the model's meta, values are parameters.
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} AS t"  # noqa: S608
        f" ({', '.join(quote(c) for c in shape.columns)}) SELECT * FROM unnest({arrays})"
    )
    return (f"{sql} {on_conflict}" if on_conflict else sql), shape


@dataclass
class Statement:
    """Collects CTEs; `execute` runs them all as one statement."""

    ctes: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def insert(
        self,
        objs: Sequence[Model],
        *,
        expressions: Mapping[str, str] | None = None,
        on_conflict: str = "",
    ) -> None:
        """INSERT the instances (all of one model) as they are, pre_save applied; an auto
        primary key left None is filled by the database.

        The rows travel as one JSON parameter (jsonb_populate_recordset), so the SQL text
        is the same for any number of rows and the driver's statement cache keeps it.
        `expressions` replaces a column's value with SQL, which may use the row as `r`
        and its position in this insert, from 1, as `r.ordinality`.
        """
        if not objs:
            return
        with_pk = getattr(objs[0], objs[0]._meta.pk.attname) is not None
        sql, shape = _insert_sql(
            type(objs[0]), with_pk, tuple(sorted((expressions or {}).items())), on_conflict
        )
        self._add(sql)
        self.params.append(json.dumps([shape.row(obj) for obj in objs], default=_json_default))

    def insert_columns(self, objs: Sequence[Model], *, on_conflict: str = "") -> None:
        """insert, each column's values as one array literal (`unnest`) instead of the rows
        as JSON: cheaper to build and for PostgreSQL to read, for the batches of models
        whose columns are all scalars (text, numbers, timestamps, uuids, booleans)."""
        if not objs:
            return
        with_pk = getattr(objs[0], objs[0]._meta.pk.attname) is not None
        sql, shape = _unnest_sql(type(objs[0]), with_pk, on_conflict)
        self._add(sql)
        self.params.extend(map(array_literal, zip(*map(shape.values, objs), strict=True)))

    def raw(self, sql: str, params: Sequence[Any]) -> None:
        """Any other data-modifying statement (an UPDATE, say) as one more CTE."""
        self._add(sql)
        self.params.extend(params)

    def _add(self, sql: str) -> None:
        self.ctes.append(f"w{len(self.ctes)} AS ({sql})")

    def execute(self) -> None:
        if not self.ctes:
            return
        with server_cursor() as cursor:
            cursor.execute(f"WITH {', '.join(self.ctes)} SELECT 1", self.params, prepare=True)


# Column types COPY may send in binary: those whose Python values the driver writes in C.
_BINARY_COPY_TYPES = frozenset(
    {"uuid", "int2", "int4", "int8", "varchar", "text", "timestamptz", "bool", "bytea", "date"}
)


@lru_cache(maxsize=16)
def _copy_statement(
    model: type[Model], attnames: tuple[str, ...]
) -> tuple[str, tuple[str, ...] | None]:
    """COPY's text for the model's fields named (by attribute), and the columns' types
    when it sends them in binary (every type has a binary writer in the driver; else
    None: text)."""
    quote = connection.ops.quote_name
    fields = {f.attname: f for f in model._meta.concrete_fields}
    types = []
    for name in attnames:
        db_type = (fields[name].db_type(connection) or "").split("(")[0]
        info = psycopg.adapters.types.get(db_type)
        types.append(info.name if info is not None else "")
    binary = all(t in _BINARY_COPY_TYPES for t in types)
    columns = ", ".join(quote(fields[name].column) for name in attnames)
    # Identifiers from the model's meta; the rows travel as COPY data.
    statement = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"
    if binary:
        statement += " (FORMAT BINARY)"
    return statement, tuple(types) if binary else None


def copy_rows(model: type[Model], attnames: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY rows of values (for the model's fields named by attribute, in that order) in:
    the bulk path, thousands of rows in one statement, each value adapted by the driver in
    C rather than written out as JSON; in binary where the columns allow (no text to
    format and parse: uuids, integers, timestamps)."""
    statement, types = _copy_statement(model, tuple(attnames))
    with server_cursor() as cursor, cursor.copy(statement) as copy:
        if types is not None:
            copy.set_types(list(types))
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def copy_insert(objs: Sequence[Model]) -> None:
    """copy_rows of the unsaved instances (all of one model, primary keys set), as they
    are, pre_save applied."""
    if not objs:
        return
    _, shape = _insert_sql(type(objs[0]), True, (), "")
    copy_rows(type(objs[0]), shape.attnames, map(shape.values, objs))


def array_literal(values: Iterable[object]) -> str:
    """A PostgreSQL array literal (`{"a","b",NULL}`) of the values, for one parameter cast
    in the SQL (`%s::text[]`, `::uuid[]`, `::bigint[]`, `::timestamptz[]`, `::bytea[]`):
    joined in C, where the driver adapts a list element by element in Python (about 3 us
    each; a batch holds thousands). Every element is quoted, so any text is safe; None is
    NULL. Values are written as str() writes them (timestamps as `2026-01-02 03:04:05+00:00`,
    which PostgreSQL reads back exactly), bytes as bytea's hex."""
    items = list(values)
    if not items:
        return "{}"
    if any(v is None for v in items):
        return (
            "{" + ",".join(["NULL" if v is None else array_literal([v])[1:-1] for v in items]) + "}"
        )
    if isinstance(items[0], (bytes, bytearray, memoryview)):
        blobs = cast("list[bytes]", items)
        return '{"' + '","'.join(["\\\\x" + bytes(v).hex() for v in blobs]) + '"}'
    # Text as it is (a str enum's value, whatever its str() says); anything else by str().
    texts = cast("list[str]", items) if isinstance(items[0], str) else list(map(str, items))
    joined = '","'.join(texts)
    flat = "".join(texts)
    if "\\" in flat or '"' in flat:
        joined = '","'.join([t.replace("\\", "\\\\").replace('"', '\\"') for t in texts])
    return '{"' + joined + '"}'


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a bulk step of bounded size builds its rows.

    A batch of thousands of events makes hundreds of thousands of objects that all stay
    alive until it is written: the collector would scan them again and again for nothing
    (a quarter of an import's CPU). Reference counting still frees what dies; cycles wait
    for the next collection after the step. Nests; leaves a disabled collector disabled."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def server_cursor() -> Iterator[psycopg.Cursor[Any]]:
    """A server-side-binding psycopg cursor on Django's connection, in its transaction.

    Django's own cursors bind client-side: PostgreSQL parses and plans every statement
    again, and results come as text. This one can prepare a fixed statement once per
    connection (`execute(..., prepare=True)`: the hot paths' few statements) and read
    results in binary (`binary=True`: the bulk checks' timestamps).
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def _fetchone_prepared(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    # Prepared once per connection, not parsed each time.
    with server_cursor() as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def _fetchone_portable(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    adapt = connection.ops.adapt_datetimefield_value
    values = [adapt(p) if isinstance(p, datetime) else p for p in params]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


fetchone_fixed = PerDatabase(postgresql=_fetchone_prepared, portable=_fetchone_portable)
"""`fetchone_fixed()(sql, params)`: one row of a fixed statement on the default database,
prepared once per connection on PostgreSQL (a hot path's lookup), plainly elsewhere."""
