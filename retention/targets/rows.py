"""Rows of one of this service's models, and the audit trail's guarded rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models import BinaryField, Q, QuerySet

from governance.audit import AuditDefinerPurge, audit_purge_allowed
from governance.db import PerDatabase
from retention import engine
from retention.targets.base import Progress, SubjectRef, Sweep, Tally, Target, no_rows


def anonymized_q(values: dict[str, Any]) -> Q:
    q = Q()
    for name, value in values.items():
        q &= Q(**{f"{name}__isnull": True}) if value is None else Q(**{name: value})
    return q


@dataclass(frozen=True, kw_only=True)
class ModelRows(Target):
    """A model's rows older than the period go, one chunk at a time (or are anonymised)."""

    model_label: str
    # How rows name a subject; None when the target holds no personal data.
    subject_q: Callable[[SubjectRef], Q] | None = None
    # A field that may not name any subject at all (NULL or missing JSON key): such rows are
    # never held by a subject's hold.
    subject_optional_field: str | None = None
    # Rows of the subject that erasure keeps (the record of the erasure itself).
    erasure_keep: dict[str, Any] = field(default_factory=dict)
    # Rows no policy ever purges (field values), e.g. the audit of policy changes.
    never_purge: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.model_label)

    @property
    def holds_personal_data(self) -> bool:
        return self.subject_q is not None

    def eligible(self, sweep: Sweep) -> QuerySet[Any]:
        """Rows the policy would act on, before holds."""
        qs = self.model._default_manager.filter(**{f"{self.timestamp_field}__lt": sweep.cutoff})
        if self.never_purge:
            qs = qs.exclude(**self.never_purge)
        if sweep.condition:
            qs = qs.filter(**sweep.condition)
        if sweep.action == "anonymize":
            qs = qs.exclude(anonymized_q(self.anonymize))
        return qs

    def held_q(self, refs: Iterable[SubjectRef]) -> Q | None:
        if self.subject_q is None:
            return None
        q: Q | None = None
        for ref in refs:
            q = self.subject_q(ref) if q is None else q | self.subject_q(ref)
        return q

    def _not_held_q(self, refs: Iterable[SubjectRef]) -> Q | None:
        """Rows no held subject owns. Written out rather than `exclude()`: a row naming no
        subject (NULL) must count as not held, where NOT (NULL = key) would drop it."""
        hq = self.held_q(refs)
        if hq is None:
            return None
        q = ~hq
        if self.subject_optional_field:
            q |= Q(**{f"{self.subject_optional_field}__isnull": True})
        return q

    def _scope(self, sweep: Sweep) -> tuple[QuerySet[Any], Q | None, Q | None]:
        """The eligible rows, those holds keep and those they leave free."""
        qs = self.eligible(sweep)
        hq = self.held_q(sweep.held)
        free = self._not_held_q(sweep.held)
        for child in self._children():
            # A row whose child row a hold keeps is kept too (deleting it would cascade).
            child_held = child.held_q(sweep.held)
            if child_held is not None:
                assert child.purged_with is not None
                parents = child.model._default_manager.filter(child_held).values(
                    child.purged_with[1]
                )
                hq = Q(pk__in=parents) if hq is None else hq | Q(pk__in=parents)
                free = ~Q(pk__in=parents) if free is None else free & ~Q(pk__in=parents)
        return qs, hq, free

    def _children(self) -> list[ModelRows]:
        return [c for c in self.children if isinstance(c, ModelRows)]

    def count(self, sweep: Sweep) -> Tally:
        qs, hq, _ = self._scope(sweep)
        return Tally(examined=qs.count(), held=qs.filter(hq).count() if hq else 0)

    def purge(self, sweep: Sweep, progress: Progress) -> Tally:
        # Not counted first (that would read the rows twice): what it examined is what it
        # removed plus what it held back.
        qs, hq, free = self._scope(sweep)
        held = qs.filter(hq).count() if hq else 0
        going = qs.filter(free) if free is not None else qs
        if sweep.action == "delete":
            for child in self._children():
                # Children first, in chunks of their own: left to the cascade, one chunk of
                # parents could drag millions of lineage rows into one transaction. Counted
                # apart from the policy's own rows.
                assert child.purged_with is not None
                engine.purge_rows(
                    child.model._default_manager.filter(
                        **{f"{child.purged_with[1]}__in": going.values("pk")}
                    ),
                    action="delete",
                    values={},
                    batch_size=sweep.batch_size,
                    on_chunk=progress.renew,
                )
            removed = self._delete_older(
                going, cutoff=sweep.cutoff, batch_size=sweep.batch_size, on_chunk=progress.chunk
            )
        else:
            removed = engine.purge_rows(
                going,
                action=sweep.action,
                values=self.anonymize,
                batch_size=sweep.batch_size,
                on_chunk=progress.chunk,
            )
        return Tally(examined=removed + held, held=held, removed=removed)

    def _delete_older(
        self, qs: QuerySet[Any], *, cutoff: datetime, batch_size: int, on_chunk: engine.OnChunk
    ) -> int:
        return engine.purge_rows(
            qs, action="delete", values={}, batch_size=batch_size, on_chunk=on_chunk
        )

    def subject_qs(self, ref: SubjectRef) -> QuerySet[Any]:
        assert self.subject_q is not None
        return self.model._default_manager.filter(self.subject_q(ref))

    def subject_remove(
        self, ref: SubjectRef, *, action: str, erasure: bool = False, batch_size: int = 1000
    ) -> int:
        qs = self.subject_qs(ref)
        if erasure and self.erasure_keep:
            qs = qs.exclude(**self.erasure_keep)
        if self.never_purge:
            qs = qs.exclude(**self.never_purge)
        if action == "anonymize":
            qs = qs.exclude(anonymized_q(self.anonymize))
        return self._remove(qs, action=action, batch_size=batch_size)

    def _remove(self, qs: QuerySet[Any], *, action: str, batch_size: int) -> int:
        return engine.purge_rows(qs, action=action, values=self.anonymize, batch_size=batch_size)

    def subject_rows(self, ref: SubjectRef) -> list[dict[str, Any]]:
        qs = self.subject_qs(ref)
        fields = [
            f.attname for f in qs.model._meta.concrete_fields if not isinstance(f, BinaryField)
        ]
        return list(qs.values(*fields))


class _DefinerDeletes:
    """PostgreSQL: through the owner-owned functions, the app role's only way past the
    table's trigger (AuditDefinerPurge)."""

    definer = AuditDefinerPurge()

    def older(
        self, qs: QuerySet[Any], *, cutoff: datetime, batch_size: int, on_chunk: engine.OnChunk
    ) -> int:
        table, where, params = engine.compiled(qs)

        def chunk(cursor: Any, lo: str, hi: str) -> int:
            return self.definer.range_chunk(
                cursor, table=table, lo=lo, hi=hi, where=where, params=params, cutoff=cutoff
            )

        return engine.ctid_walk(
            using=qs.db, table=table, chunk=chunk, batch_size=batch_size, on_chunk=on_chunk
        )

    def subject(self, target: GuardedRows, ref: SubjectRef, *, batch_size: int) -> int:
        # The function keeps the same rows as `erasure_keep` says.
        return self.definer.subject(subject_key=ref.key, using=target.subject_qs(ref).db)


class _PermitDeletes:
    """Portable (and the owner's sessions): the ORM, inside the trigger's permit."""

    def older(
        self, qs: QuerySet[Any], *, cutoff: datetime, batch_size: int, on_chunk: engine.OnChunk
    ) -> int:
        return engine.purge_rows(
            qs,
            action="delete",
            values={},
            batch_size=batch_size,
            on_chunk=on_chunk,
            guard=audit_purge_allowed,
        )

    def subject(self, target: GuardedRows, ref: SubjectRef, *, batch_size: int) -> int:
        return ModelRows.subject_remove(
            target, ref, action="delete", erasure=True, batch_size=batch_size
        )


_deletes: PerDatabase[_DefinerDeletes | _PermitDeletes] = PerDatabase(
    postgresql=_DefinerDeletes(), portable=_PermitDeletes()
)


@dataclass(frozen=True, kw_only=True)
class GuardedRows(ModelRows):
    """The audit trail: append-only, its trigger refuses DELETE but through the definer
    functions (PostgreSQL) or inside the transaction's permit (elsewhere)."""

    def _delete_older(
        self, qs: QuerySet[Any], *, cutoff: datetime, batch_size: int, on_chunk: engine.OnChunk
    ) -> int:
        return _deletes(qs.db).older(qs, cutoff=cutoff, batch_size=batch_size, on_chunk=on_chunk)

    def subject_remove(
        self, ref: SubjectRef, *, action: str, erasure: bool = False, batch_size: int = 1000
    ) -> int:
        if erasure and action == "delete":
            return _deletes(self.subject_qs(ref).db).subject(self, ref, batch_size=batch_size)
        return super().subject_remove(ref, action=action, erasure=erasure, batch_size=batch_size)

    def _remove(self, qs: QuerySet[Any], *, action: str, batch_size: int) -> int:
        return engine.purge_rows(
            qs,
            action=action,
            values=self.anonymize,
            batch_size=batch_size,
            guard=audit_purge_allowed,
        )


def fk_subject(field_name: str) -> Callable[[SubjectRef], Q]:
    def q(ref: SubjectRef) -> Q:
        return Q(**{f"{field_name}_id": ref.pk}) if ref.pk is not None else no_rows()

    return q


def key_subject(field_name: str) -> Callable[[SubjectRef], Q]:
    def q(ref: SubjectRef) -> Q:
        return Q(**{field_name: ref.key})

    return q
