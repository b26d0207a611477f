"""The ledger store on PostgreSQL: a consent write is four statements inside its
transaction: lock (or create) the subject, read its states, write every row in one
statement (governance.db.Statement), commit. Each is prepared once per connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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

    def append(self, rows: Rows) -> None:
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
