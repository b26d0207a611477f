"""The ledger store through the ORM, row by row: SQLite (the embedded default) and any
database without store_pg's data-modifying CTEs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings

from consent import identity
from consent.ledger.store import (
    PURPOSE_COLUMNS,
    STATE_UPDATE_FIELDS,
    PurposeRow,
    Rows,
    SubjectRef,
)
from consent.models import ConsentEvent, ConsentState, Purpose, Subject
from consent.notices import CURRENT_NOTICE_SQL, NEXT_NOTICE_AT_SQL
from governance.memo import unix_time
from governance.models import OutboxEvent
from governance.outbox import outbox_next_seq


class OrmLedgerStore:
    def subject_lock(
        self, ref: SubjectRef, *, states: bool = True
    ) -> tuple[Subject, dict[int, ConsentState]] | None:
        subjects = Subject.objects.select_for_update()
        if ref.identifier is None:
            subject = subjects.filter(namespace=ref.namespace, key=ref.key).first()
            if subject is None:
                return None
        else:
            ciphertext = identity.encrypt_identifier(ref.identifier, key=ref.key)
            # INSERT ... ON CONFLICT DO NOTHING: concurrent first writers do not fail.
            Subject.objects.bulk_create(
                [
                    Subject(
                        namespace=ref.namespace,
                        key=ref.key,
                        key_version=settings.SUBJECT_HASH_KEY_VERSION,
                        identifier_encrypted=ciphertext,
                    )
                ],
                ignore_conflicts=True,
            )
            subject = subjects.get(namespace=ref.namespace, key=ref.key)
            if subject.identifier_encrypted is None:
                # Erased earlier: a new grant starts a new history under a fresh ciphertext.
                subject.identifier_encrypted = ciphertext
                subject.save(update_fields=["identifier_encrypted"])
        if not states:
            return subject, {}
        return subject, {s.purpose_id: s for s in ConsentState.objects.filter(subject=subject)}

    def subjects_lock(
        self, refs: Sequence[SubjectRef]
    ) -> dict[tuple[str, str], tuple[Subject, dict[int, ConsentState]]]:
        locked = {}
        for ref in sorted(refs, key=lambda r: (r.namespace, r.key)):
            found = self.subject_lock(ref)
            if found is not None:
                locked[(ref.namespace, ref.key)] = found
        return locked

    def append_batch(self, appends: Sequence[Rows]) -> None:
        for rows in appends:
            self.append(rows)

    def append(self, rows: Rows) -> None:
        for context in rows.contexts:
            context.save(force_insert=True)
        ConsentEvent.objects.bulk_create(rows.events)
        ConsentState.objects.bulk_create(
            rows.states,
            update_conflicts=True,
            unique_fields=["purpose", "subject"],
            update_fields=[*STATE_UPDATE_FIELDS, "updated_at"],
        )
        rows.subject.save(update_fields=["last_seq", "chain_head"])
        first = outbox_next_seq(rows.subject.key)
        for offset, announcement in enumerate(rows.announcements):
            announcement.seq = first + offset
        OutboxEvent.objects.bulk_create(rows.announcements)
        for audit in rows.audits:
            audit.save(force_insert=True)

    def purpose_rows(
        self, names: Sequence[str], now: datetime
    ) -> tuple[list[PurposeRow], float | None]:
        placeholders = ", ".join(["%s"] * len(names))
        sql = (  # only placeholders are formatted in, the keys are parameters
            f"SELECT {', '.join(f'p.{c}' for c in PURPOSE_COLUMNS)},"  # noqa: S608
            f" {CURRENT_NOTICE_SQL.format(alias='p')} AS current_notice,"
            f" {NEXT_NOTICE_AT_SQL.format(alias='p')} AS next_notice_at"
            f" FROM consent_purpose p WHERE p.active AND p.key IN ({placeholders})"
        )
        rows: list[PurposeRow] = []
        upcoming: list[float] = []
        for p in Purpose.objects.raw(sql, [now, now, *names]):
            rows.append(([getattr(p, c) for c in PURPOSE_COLUMNS], p.current_notice))  # type: ignore[attr-defined]
            next_at = unix_time(getattr(p, "next_notice_at", None))
            upcoming += [next_at] if next_at is not None else []
        return rows, min(upcoming) if upcoming else None
