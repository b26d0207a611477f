"""Keeping which external ids an import applied, a batch at a time, and finding those
applied before: on PostgreSQL one statement each (a binary COPY, a lookup of one array
literal: no model instance per row, this runs for every imported event), through the ORM
elsewhere. One interface, two implementations (governance.db.PerDatabase).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import connection

from consent.models import ImportedRecord
from governance.db import PerDatabase, array_literal, copy_rows, server_cursor

# (external id hash, import id, event id)
Imported = tuple[str, uuid.UUID, uuid.UUID]


def _insert_pg(rows: Sequence[Imported]) -> None:
    copy_rows(ImportedRecord, ("external_id_hash", "consent_import_id", "event_id"), rows)


def _insert_orm(rows: Sequence[Imported]) -> None:
    ImportedRecord.objects.bulk_create(
        [ImportedRecord(external_id_hash=h, consent_import_id=i, event_id=e) for h, i, e in rows],
        batch_size=500,
    )


imported_insert = PerDatabase(postgresql=_insert_pg, portable=_insert_orm)
"""`imported_insert()(rows)`: records the rows in the current transaction."""


def _seen_pg(hashes: Sequence[str]) -> set[str]:
    table = connection.ops.quote_name(ImportedRecord._meta.db_table)
    column = connection.ops.quote_name(ImportedRecord._meta.get_field("external_id_hash").column)
    with server_cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {table} WHERE {column} = ANY(%s::text[])",  # noqa: S608
            [array_literal(hashes)],
        )
        return {row[0] for row in cursor.fetchall()}


def _seen_orm(hashes: Sequence[str]) -> set[str]:
    return set(
        ImportedRecord.objects.filter(external_id_hash__in=hashes).values_list(
            "external_id_hash", flat=True
        )
    )


imported_seen = PerDatabase(postgresql=_seen_pg, portable=_seen_orm)
"""`imported_seen()(hashes)`: those of the external id hashes imported before."""
