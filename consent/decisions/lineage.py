"""Loading a decision's lineage (the subjects it allowed), in bulk.

Two implementations of one function, picked once per database (governance.db.PerDatabase):
PostgreSQL COPYs the subject ids into a temporary table and inserts them with one
INSERT ... SELECT; the portable path (SQLite) batches ORM inserts. Repeats are ignored either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from django.db import connection

from consent.models import DecisionLineage
from governance.db import PerDatabase

Loader = Callable[[uuid.UUID, list[int]], None]


def _copy_load(decision_id: uuid.UUID, pks: list[int]) -> None:
    connection.ensure_connection()
    cur = connection.connection.cursor()
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS lineage_stage (subject_id bigint) ON COMMIT DELETE ROWS"
    )
    cur.execute("TRUNCATE lineage_stage")
    with cur.copy("COPY lineage_stage (subject_id) FROM STDIN") as copy:
        copy.write("".join([f"{pk}\n" for pk in pks]))
    cur.execute(
        "INSERT INTO consent_decisionlineage (decision_id, subject_id) "
        "SELECT %s, subject_id FROM lineage_stage ON CONFLICT DO NOTHING",
        (decision_id,),
    )


def _orm_load(decision_id: uuid.UUID, pks: list[int]) -> None:
    DecisionLineage.objects.bulk_create(
        [DecisionLineage(decision_id=decision_id, subject_id=pk) for pk in pks],
        batch_size=500,
        ignore_conflicts=True,
    )


_LOADERS: PerDatabase[Loader] = PerDatabase(postgresql=_copy_load, portable=_orm_load)


def lineage_load(*, decision_id: uuid.UUID, subject_pks: Iterable[int | None]) -> None:
    """Adds allowed subjects (None: an unknown subject, skipped) to a decision's lineage.
    Call inside the decision's transaction."""
    pks = sorted({pk for pk in subject_pks if pk is not None})
    if pks:
        _LOADERS()(decision_id, pks)
