"""Keeping which external ids an import applied, a batch at a time: on PostgreSQL one
INSERT of three arrays (no model instance per row: this runs for every imported event),
through the ORM elsewhere. One interface, two implementations (governance.db.PerDatabase).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import connection

from consent.models import ImportedRecord
from governance.db import PerDatabase, server_cursor

# (external id hash, import id, event id)
Imported = tuple[str, uuid.UUID, uuid.UUID]


def _columns() -> str:
    fields = {f.name: f.column for f in ImportedRecord._meta.concrete_fields}
    names = ("external_id_hash", "consent_import", "event_id")
    return ", ".join(connection.ops.quote_name(fields[n]) for n in names)


def _insert_pg(rows: Sequence[Imported]) -> None:
    table = connection.ops.quote_name(ImportedRecord._meta.db_table)
    with server_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({_columns()})"  # noqa: S608 - names from _meta
            " SELECT * FROM unnest(%s::text[], %s::uuid[], %s::uuid[])",
            [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
        )


def _insert_orm(rows: Sequence[Imported]) -> None:
    ImportedRecord.objects.bulk_create(
        [ImportedRecord(external_id_hash=h, consent_import_id=i, event_id=e) for h, i, e in rows],
        batch_size=500,
    )


imported_insert = PerDatabase(postgresql=_insert_pg, portable=_insert_orm)
"""`imported_insert()(rows)`: records the rows in the current transaction."""
