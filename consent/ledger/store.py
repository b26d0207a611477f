"""The ledger's storage interface: what the write path asks of the database. Two
implementations stand beside each other: store_pg (prepared statements, one statement for a
whole append) and store_orm (the portable ORM path, SQLite's). consent.ledger.write picks one
per database engine (the Sentry deletions idea); nothing else knows which one runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from consent import identity
from consent.models import ConsentContext, ConsentEvent, ConsentState, Subject
from governance.models import AuditEvent, OutboxEvent

# The purpose columns the write path reads (the rest stay deferred).
PURPOSE_COLUMNS = ("id", "key", "consent_ttl", "gpc_opt_out")
# A purpose's columns (PURPOSE_COLUMNS) and its current notice version (None: none yet).
PurposeRow = tuple[list[Any], int | None]
# ConsentState columns an append rewrites when the (subject, purpose) row exists.
STATE_UPDATE_FIELDS = ("status", "notice_version", "since", "expires_at", "event_id", "gpc")


@dataclass(frozen=True)
class SubjectRef:
    """Which subject a write locks. With `identifier`, a missing subject is created and an
    erased one gets a fresh ciphertext (a new grant starts a new history); without, a
    missing subject is not locked at all."""

    namespace: str
    key: str
    identifier: str | None = None

    @classmethod
    def of(cls, identifier: str, namespace: str = Subject.Namespace.ACCOUNT) -> SubjectRef:
        return cls(namespace=namespace, key=identity.subject_key(identifier), identifier=identifier)


@dataclass
class Rows:
    """Everything one append writes for a locked subject, built and unsaved."""

    subject: Subject
    events: Sequence[ConsentEvent]
    states: Sequence[ConsentState]
    announcements: Sequence[OutboxEvent]
    contexts: Sequence[ConsentContext] = field(default_factory=list)
    audits: Sequence[AuditEvent] = field(default_factory=list)


class LedgerStore(Protocol):
    def subject_lock(
        self, ref: SubjectRef, *, states: bool = True
    ) -> tuple[Subject, dict[int, ConsentState]] | None:
        """Locks the subject's row until the transaction ends (the lock orders every write
        to one subject: its chain stays linear, its states in step with its ledger) and
        reads its current states by purpose id, after the lock. None: no such subject and
        no identifier to create it with."""

    def subjects_lock(
        self, refs: Sequence[SubjectRef]
    ) -> dict[tuple[str, str], tuple[Subject, dict[int, ConsentState]]]:
        """subject_lock for many subjects (each named once), locked in key order, by
        (namespace, key); a subject that does not exist and cannot be created is absent."""

    def append_batch(self, appends: Sequence[Rows]) -> None:
        """append for many locked subjects at once."""

    def append(self, rows: Rows) -> None:
        """Writes the rows and the subject's new chain head (events: event_build moved it),
        numbering the outbox rows in the subject's sequence. Inside the lock's transaction."""

    def purpose_rows(
        self, names: Sequence[str], now: datetime
    ) -> tuple[list[PurposeRow], float | None]:
        """The active purposes named, with their current notice versions at `now`, and when
        the next notice version of any of them is published (a Unix time, or None)."""
