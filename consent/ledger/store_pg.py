"""The ledger store on PostgreSQL: a consent write is four statements inside its
transaction: lock (or create) the subject, read its states, write every row in one
statement (governance.db.Statement), commit. Each is prepared once per connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from consent import identity
from consent.ledger.store import (
    PURPOSE_COLUMNS,
    STATE_UPDATE_FIELDS,
    PurposeRow,
    Rows,
    SubjectRef,
)
from consent.models import ConsentState, Subject
from consent.notices import CURRENT_NOTICE_SQL, NEXT_NOTICE_AT_SQL
from governance import db
from governance.outbox import OUTBOX_NEXT_SEQ_SQL

_SUBJECT_COLUMNS = (
    "id",
    "key_version",
    "identifier_encrypted",
    "created_at",
    "erased_at",
    "last_seq",
    "chain_head",
)
_STATE_COLUMNS = (
    "id",
    "purpose_id",
    "status",
    "notice_version",
    "since",
    "expires_at",
    "event_id",
    "gpc",
    "updated_at",
)
_SUBJECT_LIST = ", ".join(_SUBJECT_COLUMNS)

# Column names from the tuples above; every value is a parameter.
# ON CONFLICT DO UPDATE takes the row lock whether it inserts or finds the row, and gives a
# subject erased earlier a fresh ciphertext (a new grant starts a new history).
_SUBJECT_LOCK_OR_CREATE_SQL = f"""
INSERT INTO consent_subject AS s
    (namespace, key, key_version, identifier_encrypted, created_at, last_seq, chain_head)
VALUES (%s, %s, %s, %s, %s, 0, '')
ON CONFLICT (namespace, key) DO UPDATE
    SET identifier_encrypted = COALESCE(s.identifier_encrypted, EXCLUDED.identifier_encrypted)
RETURNING {_SUBJECT_LIST}
"""  # noqa: S608
_SUBJECT_LOCK_SQL = (
    f"SELECT {_SUBJECT_LIST} FROM consent_subject"  # noqa: S608
    " WHERE namespace = %s AND key = %s FOR UPDATE"
)
_STATES_SQL = (
    f"SELECT {', '.join(_STATE_COLUMNS)} FROM consent_consentstate"  # noqa: S608
    " WHERE subject_id = %s"
)
_PURPOSES_SQL = (
    f"SELECT {', '.join(f'p.{c}' for c in PURPOSE_COLUMNS)},"  # noqa: S608
    f" {CURRENT_NOTICE_SQL.format(alias='p')}, {NEXT_NOTICE_AT_SQL.format(alias='p')}"
    " FROM consent_purpose p WHERE p.active AND p.key = ANY(%s)"
)
_STATES_UPSERT = "ON CONFLICT (purpose_id, subject_id) DO UPDATE SET " + ", ".join(
    f"{c} = EXCLUDED.{c}" for c in [*STATE_UPDATE_FIELDS, "updated_at"]
)
_HEAD_UPDATE_SQL = "UPDATE consent_subject SET last_seq = %s, chain_head = %s WHERE id = %s"

# The batch twins (imports): many subjects per statement, locked in key order.
_SUBJECTS_LOCK_OR_CREATE_SQL = f"""
INSERT INTO consent_subject AS s
    (namespace, key, key_version, identifier_encrypted, created_at, last_seq, chain_head)
SELECT r.namespace, r.key, %s, r.identifier, %s, 0, ''
FROM unnest(%s::text[], %s::text[], %s::bytea[]) AS r(namespace, key, identifier)
ORDER BY r.namespace, r.key
ON CONFLICT (namespace, key) DO UPDATE
    SET identifier_encrypted = COALESCE(s.identifier_encrypted, EXCLUDED.identifier_encrypted)
RETURNING namespace, key, {_SUBJECT_LIST}
"""  # noqa: S608
_SUBJECTS_LOCK_SQL = f"""
SELECT namespace, key, {_SUBJECT_LIST} FROM consent_subject
WHERE (namespace, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY namespace, key FOR UPDATE
"""  # noqa: S608
_STATES_MANY_SQL = (
    f"SELECT subject_id, {', '.join(_STATE_COLUMNS)} FROM consent_consentstate"  # noqa: S608
    " WHERE subject_id = ANY(%s::bigint[])"
)
_HEADS_UPDATE_SQL = (
    "UPDATE consent_subject s SET last_seq = v.last_seq, chain_head = v.chain_head"
    " FROM unnest(%s::bigint[], %s::int[], %s::text[]) AS v(id, last_seq, chain_head)"
    " WHERE s.id = v.id"
)


class PostgresLedgerStore:
    def subject_lock(
        self, ref: SubjectRef, *, states: bool = True
    ) -> tuple[Subject, dict[int, ConsentState]] | None:
        with db.server_cursor() as cursor:
            if ref.identifier is None:
                cursor.execute(_SUBJECT_LOCK_SQL, [ref.namespace, ref.key], prepare=True)
            else:
                ciphertext = identity.encrypt_identifier(ref.identifier, key=ref.key)
                cursor.execute(
                    _SUBJECT_LOCK_OR_CREATE_SQL,
                    [
                        ref.namespace,
                        ref.key,
                        settings.SUBJECT_HASH_KEY_VERSION,
                        ciphertext,
                        timezone.now(),
                    ],
                    prepare=True,
                )
            row = cursor.fetchone()
            if row is None:
                return None
            subject = Subject(
                namespace=ref.namespace,
                key=ref.key,
                **dict(zip(_SUBJECT_COLUMNS, row, strict=True)),
            )
            if not states:
                return subject, {}
            # A fresh statement, so a fresh snapshot: it sees what earlier lock holders committed.
            cursor.execute(_STATES_SQL, [subject.pk], prepare=True)
            rows = [
                ConsentState(subject_id=subject.pk, **dict(zip(_STATE_COLUMNS, r, strict=True)))
                for r in cursor.fetchall()
            ]
        return subject, {s.purpose_id: s for s in rows}

    def subjects_lock(
        self, refs: Sequence[SubjectRef]
    ) -> dict[tuple[str, str], tuple[Subject, dict[int, ConsentState]]]:
        creating = [r for r in refs if r.identifier is not None]
        existing = [r for r in refs if r.identifier is None]
        subjects: list[Subject] = []
        with db.server_cursor() as cursor:
            if creating:
                cursor.execute(
                    _SUBJECTS_LOCK_OR_CREATE_SQL,
                    [
                        settings.SUBJECT_HASH_KEY_VERSION,
                        timezone.now(),
                        db.array_literal(r.namespace for r in creating),
                        db.array_literal(r.key for r in creating),
                        db.array_literal(
                            identity.encrypt_identifier(r.identifier, key=r.key)
                            for r in creating
                            if r.identifier is not None
                        ),
                    ],
                )
                subjects += self._subjects(cursor.fetchall())
            if existing:
                cursor.execute(
                    _SUBJECTS_LOCK_SQL,
                    [
                        db.array_literal(r.namespace for r in existing),
                        db.array_literal(r.key for r in existing),
                    ],
                )
                subjects += self._subjects(cursor.fetchall())
            states: dict[int, dict[int, ConsentState]] = {s.pk: {} for s in subjects}
            if subjects:
                cursor.execute(_STATES_MANY_SQL, [db.array_literal(s.pk for s in subjects)])
                for subject_id, *values in cursor.fetchall():
                    state = db.unsaved(
                        ConsentState,
                        {},
                        subject_id=subject_id,
                        **dict(zip(_STATE_COLUMNS, values, strict=True)),
                    )
                    states[subject_id][state.purpose_id] = state
        return {(s.namespace, s.key): (s, states[s.pk]) for s in subjects}

    @staticmethod
    def _subjects(rows: Sequence[tuple[Any, ...]]) -> list[Subject]:
        return [
            db.unsaved(
                Subject,
                {},
                namespace=namespace,
                key=key,
                **dict(zip(_SUBJECT_COLUMNS, rest, strict=True)),
            )
            for namespace, key, *rest in rows
        ]

    def append_batch(self, appends: Sequence[Rows]) -> None:
        if not appends:
            return
        for rows in appends:
            _number_announcements(rows)
        # The events by COPY (the bulk of the rows), then the rest in one statement.
        db.copy_insert([e for rows in appends for e in rows.events])
        statement = db.Statement()
        statement.insert([c for rows in appends for c in rows.contexts])
        statement.insert_columns(
            [s for rows in appends for s in rows.states], on_conflict=_STATES_UPSERT
        )
        heads = [rows.subject for rows in appends]
        statement.raw(
            _HEADS_UPDATE_SQL,
            [
                db.array_literal(s.pk for s in heads),
                db.array_literal(s.last_seq for s in heads),
                db.array_literal(s.chain_head for s in heads),
            ],
        )
        statement.insert(
            [a for rows in appends for a in rows.announcements],
            expressions={"seq": OUTBOX_NEXT_SEQ_SQL},
        )
        statement.insert([a for rows in appends for a in rows.audits])
        statement.execute()

    def append(self, rows: Rows) -> None:
        _number_announcements(rows)
        statement = db.Statement()
        statement.insert(rows.contexts)
        statement.insert(rows.events)
        statement.insert(rows.states, on_conflict=_STATES_UPSERT)
        subject = rows.subject
        statement.raw(_HEAD_UPDATE_SQL, [subject.last_seq, subject.chain_head, subject.pk])
        statement.insert(rows.announcements, expressions={"seq": OUTBOX_NEXT_SEQ_SQL})
        statement.insert(rows.audits)
        statement.execute()

    def purpose_rows(
        self, names: Sequence[str], now: datetime
    ) -> tuple[list[PurposeRow], float | None]:
        rows: list[PurposeRow] = []
        upcoming: list[float] = []
        with db.server_cursor() as cursor:
            cursor.execute(_PURPOSES_SQL, [now, now, list(names)], prepare=True)
            for *values, notice, next_at in cursor.fetchall():
                rows.append((values, notice))
                upcoming += [next_at.timestamp()] if next_at else []
        return rows, min(upcoming) if upcoming else None


def _number_announcements(rows: Rows) -> None:
    """Each outbox row's place among its subject's rows of this append, from 1: the
    statement adds the subject's last sequence number (OUTBOX_NEXT_SEQ_SQL)."""
    for position, announcement in enumerate(rows.announcements, start=1):
        announcement.seq = position
