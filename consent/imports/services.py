"""Writes of imports: checking a whole file, recording it (its records encrypted, in
batches), applying it batch by batch through the ledger's one write path, and completing it.

Nothing half-written: the whole file is checked before anything is recorded, and a bad row
fails it whole (400 import_invalid naming the rows). Each batch is then applied in its own
transaction (events, states, the imported external ids, its audit row, the batch marked
done and its ciphertext destroyed), claimed by its row lock; batches never share a subject,
so several workers may apply them side by side. A worker that dies mid-batch leaves it
undone (its transaction rolls back) and the next step takes it again; records whose
external id was imported before, by this import or another, are skipped. Completion writes
one `import.completed` outbox event (no webhook per record) and its audit row.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from consent.imports.batches import batch_decrypt, batch_encrypt
from consent.imports.check import Checked, external_id_hash
from consent.imports.formats import (
    ImportRecord,
)
from consent.imports.store import imported_insert, imported_seen
from consent.ledger.store import SubjectRef
from consent.ledger.write import Entry, Plan, Write, ledger_write_batch
from consent.models import (
    Action,
    ConsentImport,
    ConsentImportBatch,
    ConsentState,
    IndicationMethod,
    Purpose,
    Source,
    Subject,
)
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_record
from governance.db import gc_paused
from governance.outbox import outbox_enqueue
from governance.queue import task_queue_on_commit, task_send

IMPORT_APPLY_TASK = "consent.import_apply"
IMPORTS_RESUME_TASK = "consent.imports_resume"
# An import with no batch applied for this long is taken up again (imports_resume).
STALE = timedelta(minutes=5)
BATCH_SIZE = 5000
# Messages queued when an import is created: how many workers may apply its batches at once.
APPLY_MESSAGES = 2


def _batches(records: list[ImportRecord], size: int) -> list[list[ImportRecord]]:
    """The records by subject, each subject's in time order, cut into batches of about
    `size` that never split a subject (a batch names each subject once)."""
    ordered = sorted(records, key=lambda r: (r.namespace, r.subject_id, r.effective_at, r.row))
    batches: list[list[ImportRecord]] = []
    current: list[ImportRecord] = []
    for record in ordered:
        if len(current) >= size and (record.namespace, record.subject_id) != (
            current[-1].namespace,
            current[-1].subject_id,
        ):
            batches.append(current)
            current = []
        current.append(record)
    if current:
        batches.append(current)
    return batches


def import_create(
    *,
    actor: Actor,
    checked: Checked,
    batch_size: int = BATCH_SIZE,
    queue: bool = True,
    now: datetime | None = None,
) -> ConsentImport:
    """Records a checked file: the import and its batches (encrypted), audited; with
    `queue`, the application is queued on commit (the API), else the caller applies it
    (the management command)."""
    moment = now or timezone.now()
    batches = _batches(checked.records, batch_size)
    import_id = uuid.uuid4()
    with transaction.atomic():
        consent_import = ConsentImport.objects.create(
            id=import_id,
            created_at=moment,
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label[:200],
            format=checked.format,
            mapping=checked.mapping[:200],
            file_sha256=checked.sha256,
            total=len(checked.records),
            ignored=checked.ignored,
            batch_count=len(batches),
        )
        ConsentImportBatch.objects.bulk_create(
            ConsentImportBatch(
                consent_import=consent_import,
                index=index,
                size=len(records),
                records_encrypted=batch_encrypt(import_id, index, records),
            )
            for index, records in enumerate(batches)
        )
        audit_record(
            actor=actor,
            action="import.create",
            target_type="consent_import",
            target_id=str(import_id),
            detail={
                "format": checked.format,
                "mapping": checked.mapping,
                "file_sha256": checked.sha256,
                "records": len(checked.records),
                "ignored": checked.ignored,
                "batches": len(batches),
            },
        )
        if queue:
            for _ in range(max(1, min(len(batches), APPLY_MESSAGES))):
                task_queue_on_commit(IMPORT_APPLY_TASK, import_id=str(import_id))
    return consent_import


# --- applying it ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Standing:
    status: str
    since: datetime
    expires_at: datetime | None

    def granted_at(self, at: datetime) -> bool:
        return self.status == Action.GRANTED and (self.expires_at is None or self.expires_at > at)


def _plan(records: Sequence[ImportRecord], purposes: Mapping[str, Purpose]) -> Plan:
    """One subject's records (in time order) as ledger entries. A decision older than the
    purpose's standing one joins the history and leaves the state alone; `granted: false`
    after a grant still in force is a withdrawal, else a refusal (as for consent_record)."""

    def plan(states: Mapping[int, ConsentState]) -> list[Entry]:
        latest = {
            purpose_id: _Standing(s.status, s.since, s.expires_at)
            for purpose_id, s in states.items()
        }
        earlier: dict[int, _Standing] = {}
        entries = []
        for record in records:
            purpose = purposes[record.purpose]
            standing = latest.get(purpose.id)
            current = standing is None or record.effective_at >= standing.since
            before = standing if current else earlier.get(purpose.id)
            at = record.effective_at
            if record.granted:
                action = Action.GRANTED
            elif before is not None and before.granted_at(at):
                action = Action.WITHDRAWN
            else:
                action = Action.REFUSED
            ttl = purpose.consent_ttl
            expires_at = at + ttl if record.granted and ttl else None
            entries.append(
                Entry(
                    purpose,
                    action,
                    record.notice_version,
                    expires_at,
                    effective_at=at,
                    indication_method=record.indication_method,
                    current=current,
                )
            )
            earlier[purpose.id] = _Standing(action, at, expires_at)
            if current:
                latest[purpose.id] = earlier[purpose.id]
        return entries

    return plan


def _actor_of(consent_import: ConsentImport) -> Actor:
    return Actor(consent_import.actor_type, consent_import.actor_id, consent_import.actor_label)


def _batch_apply(
    consent_import: ConsentImport, batch: ConsentImportBatch, now: datetime
) -> tuple[int, int]:
    """Applies one batch inside the caller's transaction; (applied, skipped)."""
    assert batch.records_encrypted is not None
    records = batch_decrypt(consent_import.id, batch.index, batch.records_encrypted)
    hashes = [external_id_hash(r.external_id) for r in records]
    seen = imported_seen()(hashes)
    # One reference (and one keyed hash) per subject, not per record.
    refs = {
        subject: SubjectRef.of(subject[1], subject[0])
        for subject in dict.fromkeys((r.namespace, r.subject_id) for r in records)
    }
    # Decisions from before a person's erasure stay erased: an import never brings them back.
    erased_at = {
        (namespace, key): at
        for namespace, key, at in Subject.objects.filter(
            key__in=[ref.key for ref in refs.values()], erased_at__isnull=False
        ).values_list("namespace", "key", "erased_at")
    }
    by_subject: dict[tuple[str, str], list[tuple[ImportRecord, str]]] = defaultdict(list)
    for record, digest in zip(records, hashes, strict=True):
        ref = refs[(record.namespace, record.subject_id)]
        erased = erased_at.get((ref.namespace, ref.key))
        if digest not in seen and (erased is None or record.effective_at > erased):
            by_subject[(record.namespace, record.subject_id)].append((record, digest))
    purposes = Purpose.objects.only("pk", "key", "consent_ttl", "gpc_opt_out").in_bulk(
        {r.purpose for r in records}, field_name="key"
    )
    actor = _actor_of(consent_import)
    results = ledger_write_batch(
        items=[
            (refs[subject], _plan([r for r, _ in pairs], purposes))
            for subject, pairs in by_subject.items()
        ],
        write=Write(
            actor=actor,
            source=Source.IMPORT,
            indication_method=IndicationMethod.IMPORT,
            context=None,
            audit_action=None,  # audited per batch, below
            announce_events=False,  # announced once, as import.completed
        ),
        now=now,
    )
    imported = [
        (digest, consent_import.id, event.id)
        for pairs, result in zip(by_subject.values(), results, strict=True)
        for (_, digest), event in zip(pairs, result.events, strict=True)
    ]
    if imported:
        imported_insert()(imported)
    applied, skipped = len(imported), len(records) - len(imported)
    audit_record(
        actor=actor,
        action="import.batch",
        target_type="consent_import",
        target_id=str(consent_import.id),
        detail={"batch": batch.index, "applied": applied, "skipped": skipped},
    )
    ConsentImportBatch.objects.filter(pk=batch.pk).update(done=True, records_encrypted=None)
    ConsentImport.objects.filter(pk=consent_import.pk).update(
        status=ConsentImport.Status.RUNNING,
        progressed_at=now,
        applied=F("applied") + applied,
        skipped=F("skipped") + skipped,
    )
    return applied, skipped


def _complete(consent_import: ConsentImport, now: datetime) -> bool:
    """Marks the import completed with its one outbox event; False if it already was."""
    with transaction.atomic():
        row = ConsentImport.objects.select_for_update().get(pk=consent_import.pk)
        if row.status == ConsentImport.Status.COMPLETED:
            return False
        row.status = ConsentImport.Status.COMPLETED
        row.completed_at = now
        row.save(update_fields=["status", "completed_at"])
        summary = {
            "import_id": str(row.id),
            "format": row.format,
            "mapping": row.mapping,
            "records": row.total,
            "applied": row.applied,
            "skipped": row.skipped,
            "ignored": row.ignored,
            "completed_at": iso(now),
        }
        outbox_enqueue(event_type="import.completed", payload=summary)
        audit_record(
            actor=_actor_of(row),
            action="import.complete",
            target_type="consent_import",
            target_id=str(row.id),
            detail=summary,
        )
    return True


def import_apply_step(*, import_id: uuid.UUID | str, now: datetime | None = None) -> str:
    """One step: applies the next batch nobody holds ("batch"), or completes the import
    ("completed"), or finds the rest held by other workers ("waiting") or nothing left
    ("done"). Safe to run twice and from several workers at once: batches never share a
    subject, so two workers apply two batches side by side."""
    moment = now or timezone.now()
    consent_import = ConsentImport.objects.filter(pk=import_id).first()
    if consent_import is None or consent_import.status in (
        ConsentImport.Status.COMPLETED,
        ConsentImport.Status.FAILED,
    ):
        return "done"
    try:
        # One batch's rows, built and written with the cyclic collector paused
        # (governance.db.gc_paused: a quarter of the CPU otherwise).
        with gc_paused(), transaction.atomic():
            # Claimed by its row lock for as long as its transaction runs; a worker that
            # dies releases it with its connection, its writes rolled back.
            batch = (
                ConsentImportBatch.objects.select_for_update(skip_locked=True)
                .filter(consent_import=consent_import, done=False)
                .order_by("index")
                .first()
            )
            if batch is not None:
                _batch_apply(consent_import, batch, moment)
                return "batch"
    except DatabaseError:
        raise  # transient (a concurrent import of the same ids, say): the batch stays undone
    except Exception as exc:
        import_fail(import_id=import_id, error=f"{type(exc).__name__}: {exc}")
        raise
    if ConsentImportBatch.objects.filter(consent_import=consent_import, done=False).exists():
        return "waiting"
    return "completed" if _complete(consent_import, moment) else "done"


def import_apply(
    *,
    import_id: uuid.UUID | str,
    seconds: float | None = None,
    progress: Callable[[ConsentImport], None] | None = None,
) -> str:
    """Steps until the import is complete (or, with `seconds`, until that long has passed:
    "batch" then says there is more). `progress` sees the import after each batch."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        outcome = import_apply_step(import_id=import_id)
        if progress is not None:
            progress(ConsentImport.objects.get(pk=import_id))
        if outcome != "batch" or (deadline is not None and time.monotonic() > deadline):
            return outcome


def import_fail(*, import_id: uuid.UUID | str, error: str) -> None:
    """Marks the import failed (what was applied stays applied, and is on record) and
    destroys the records of its unapplied batches: a failed import is never resumed, so
    they would otherwise be personal data kept for nothing."""
    with transaction.atomic():
        row = ConsentImport.objects.select_for_update().filter(pk=import_id).first()
        if row is None or row.status == ConsentImport.Status.COMPLETED:
            return
        row.status = ConsentImport.Status.FAILED
        row.error = error[:2000]
        row.save(update_fields=["status", "error"])
        destroyed = ConsentImportBatch.objects.filter(
            consent_import=row, records_encrypted__isnull=False
        ).update(records_encrypted=None)
        audit_record(
            actor=_actor_of(row),
            action="import.fail",
            target_type="consent_import",
            target_id=str(row.id),
            detail={"error": row.error, "applied": row.applied, "batches_destroyed": destroyed},
        )


def imports_resume(*, stale: timedelta = STALE, now: datetime | None = None) -> int:
    """Queues the application of every import that has made no progress for `stale`
    (a lost message, a dead worker); returns how many. Steps are safe to repeat."""
    moment = now or timezone.now()
    stalled = (
        ConsentImport.objects.filter(
            status__in=[ConsentImport.Status.PENDING, ConsentImport.Status.RUNNING]
        )
        .annotate(last=Coalesce("progressed_at", "created_at"))
        .filter(last__lte=moment - stale)
        .values_list("pk", flat=True)
    )
    count = 0
    for import_id in stalled:
        task_send(IMPORT_APPLY_TASK, kwargs={"import_id": str(import_id)})
        count += 1
    return count


def import_resume(*, consent_import: ConsentImport, actor: Actor) -> bool:
    """Queues the application of an unfinished import again, as the beat's imports_resume
    does for a stalled one (steps are safe to repeat); audited. False if it has finished."""
    with transaction.atomic():
        row = ConsentImport.objects.select_for_update().filter(pk=consent_import.pk).first()
        if row is None or row.status not in (
            ConsentImport.Status.PENDING,
            ConsentImport.Status.RUNNING,
        ):
            return False
        audit_record(
            actor=actor,
            action="import.resume",
            target_type="consent_import",
            target_id=str(row.id),
            detail={"status": row.status, "applied": row.applied},
        )
        task_queue_on_commit(IMPORT_APPLY_TASK, import_id=str(row.id))
    return True
