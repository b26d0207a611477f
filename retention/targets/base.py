"""The interface every retention target implements, and the values that cross it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.db.models import Q


@dataclass(frozen=True)
class SubjectRef:
    """A subject as targets see it: the keyed hash always, the row id when it is known, the
    plaintext identifier when the caller holds it (an erasure, a withdrawal of a living
    subject), for tables keyed by it."""

    key: str
    namespace: str = "account"
    pk: int | None = None
    identifier: str | None = field(default=None, repr=False)


class ErasureMode:
    DELETE = "delete"
    ANONYMIZE = "anonymize"
    LEDGER = "ledger"  # removed last, by the guarded purge path, which leaves the tombstone
    LINEAGE = "lineage"  # removed first, by decisions_forget_subject
    NONE = "none"  # holds no personal data


@dataclass(frozen=True)
class Sweep:
    """What one policy's run asks of its target: the rows older than `cutoff` (at `now`)
    that `condition` selects, `held` subjects' rows excepted, in chunks of `batch_size`."""

    cutoff: datetime
    now: datetime
    action: str
    condition: dict[str, Any]
    batch_size: int
    held: tuple[SubjectRef, ...]

    @property
    def held_keys(self) -> list[str]:
        return [r.key for r in self.held]


@dataclass(frozen=True)
class Tally:
    """What a target found past the cutoff, held back and removed (anonymised)."""

    examined: int
    held: int
    removed: int = 0


class Progress:
    """A run's progress callbacks: `chunk` after each chunk of the policy's own rows,
    `renew` through other work of the run (a parent's children), to keep its lease."""

    def chunk(self, count: int) -> None:
        return None

    def renew(self, count: int = 0) -> None:
        return None


@dataclass(frozen=True, kw_only=True)
class Target(ABC):
    """A kind of retention target. Subclasses implement `count`, `purge`, `subject_remove`
    and `subject_rows`; the registry makes one instance per target."""

    # Whether a policy may narrow the target with a condition on its fields.
    takes_condition: ClassVar[bool] = True
    # The ledger's proof-keeping period applies to every purpose's data (the Art. 30 record).
    keeps_proof_of_consent: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 10_000

    name: str
    timestamp_field: str
    label: str = ""
    # Field values that anonymise a row (the `anonymize` action and erasure of such rows).
    anonymize: dict[str, Any] = field(default_factory=dict)
    erasure: str = ErasureMode.DELETE
    # Proof the controller must be able to show (Art. 5(2), 7(1)): no policy may keep it for
    # less than RETENTION_MINIMUM_ACCOUNTABILITY_DAYS. Erasure is not a policy: it still goes.
    accountability: bool = False
    # (target, field): rows that live exactly as long as their parent row in that target and
    # are purged by the parent's policy, first, in chunks; such a target has no policy of
    # its own.
    purged_with: tuple[str, str] | None = None
    # The targets whose rows this one's policy purges first (filled in by the registry from
    # their `purged_with`).
    children: tuple[Target, ...] = ()
    default_keep: timedelta = timedelta(days=365)
    default_action: str = "delete"
    default_condition: dict[str, Any] = field(default_factory=dict)
    # The purpose whose withdrawal removes a subject's rows here (external tables).
    purpose: str | None = None

    @property
    def purposes(self) -> tuple[str, ...]:
        """Every purpose whose withdrawal removes a subject's rows here."""
        return (self.purpose,) if self.purpose else ()

    @property
    def settle_after(self) -> timedelta:
        """How long a removal's leftovers stay on storage before `settle` may delete them (a
        lake table's vacuum delay, so concurrent writers and readers are not broken); zero
        where a removal is final at once, as a database's DELETE is."""
        return timedelta(0)

    def settle(self, *, now: datetime, erasure: bool = False) -> int:
        """Deletes what removals made at least `settle_after` before `now` left on storage (a
        lake table's old data files and the log entries that describe them); returns the
        files deleted. With `erasure`, no earlier version of the target stays readable."""
        return 0

    @property
    @abstractmethod
    def holds_personal_data(self) -> bool: ...

    @abstractmethod
    def count(self, sweep: Sweep) -> Tally:
        """What a run would examine and hold back; changes nothing (dry runs, held policies)."""

    @abstractmethod
    def purge(self, sweep: Sweep, progress: Progress) -> Tally:
        """Removes (or anonymises) what the sweep selects, chunk by chunk."""

    @abstractmethod
    def subject_remove(
        self, ref: SubjectRef, *, action: str, erasure: bool = False, batch_size: int = 1000
    ) -> int:
        """Removes (or anonymises) one subject's rows: for an erasure (`erasure`: the rows the
        target keeps as the record of it stay) or a withdrawal's propagation."""

    @abstractmethod
    def subject_rows(self, ref: SubjectRef) -> list[dict[str, Any]]:
        """One subject's rows, for an access export."""

    def subject_rekey(
        self, ref: SubjectRef, *, new_key: str, new_identifier: str | None = None
    ) -> int:
        """Names the subject's rows by `new_key` (a table keyed by the identifier: by
        `new_identifier`, which `new_key` is the hash of) after an identifier rectification;
        how many rows changed (none the second time). This service's own stores are re-keyed
        in the rectification's transaction, so only tables elsewhere (other databases, the
        lake) do anything here."""
        return 0


def no_rows() -> Q:
    return Q(pk__in=[])
