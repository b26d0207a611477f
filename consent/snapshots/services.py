"""Writes of snapshots: creating one, building it chunk by chunk, deleting and expiring it,
and recording the usage a pipeline uploads as a Decision with lineage.

The build follows retention's restartable chunk pattern: creation splits the namespace into
ranges of subject ids (`SnapshotChunk`); each build message claims one range under a lease
(a conditional UPDATE, so two workers never take the same one while it is held), answers it
through the one fact gatherer and the one rule (`facts_for(...).standings`, `decide`),
writes its part file, marks it done in a short transaction, and queues its continuation. A
worker that dies leaves its range to the next claim once the lease lapses; whoever finds
every range done assembles the file. Memory holds one range at a time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from consent import identity
from consent.checks.facts import ACCOUNT
from consent.checks.gather import facts_for
from consent.checks.inputs import SubjectHasher
from consent.checks.rule import PurposeRule, decide
from consent.decisions.services import data_use_for_check
from consent.errors import UnknownDataUse
from consent.models import DataUse, Snapshot, SnapshotChunk, Subject
from consent.snapshots import files
from consent.snapshots.keys import pseudonym_key_new, pseudonym_key_of
from governance.actors import Actor
from governance.api.common import iso
from governance.audit import audit_record
from governance.errors import InvalidRequest
from governance.queue import task_queue_on_commit, task_send

SNAPSHOT_BUILD_TASK = "consent.snapshot_build"
SNAPSHOTS_EXPIRE_TASK = "consent.snapshots_expire"
SNAPSHOTS_RESUME_TASK = "consent.snapshots_resume"

# A claimed range (or the assembly) is another worker's to take after this.
LEASE = timedelta(minutes=5)
# Build messages queued at creation: how many workers may take ranges at once.
BUILD_MESSAGES = 4
SYSTEM = Actor.system("snapshots")


# --- creation -------------------------------------------------------------------------------


def _rule_and_data_use(purpose_key: Any, data_use_key: Any) -> tuple[PurposeRule, DataUse | None]:
    """The purpose's rule and the data use: one of the two named; a data use implies its
    purpose (and must serve the purpose when both are named)."""
    facts = facts_for(connection)
    if purpose_key in (None, "") and data_use_key in (None, ""):
        raise InvalidRequest(
            "Name a purpose or a data use.", detail={"fields": ["purpose", "data_use"]}
        )
    if purpose_key in (None, ""):
        found = (
            DataUse.objects.select_related("purpose").filter(key=data_use_key, active=True).first()
            if isinstance(data_use_key, str)
            else None
        )
        if found is None:
            raise UnknownDataUse(detail={"data_use": data_use_key})
        purpose_key = found.purpose.key
    rule = facts.purpose_rule(purpose_key)
    return rule, data_use_for_check(data_use_key, rule)


def snapshot_create(
    *,
    actor: Actor,
    purpose_key: Any = None,
    data_use_key: Any = None,
    as_of: datetime | None = None,
    namespace: str = ACCOUNT,
    key_kind: str = Snapshot.KeyKind.IDENTIFIER,
    chunk_size: int | None = None,
    now: datetime | None = None,
) -> Snapshot:
    """Records a pending snapshot of every subject of the namespace as of `as_of` (default:
    now), its ranges and a fresh pseudonym key (encrypted); the build is queued on commit."""
    if namespace != ACCOUNT:
        raise InvalidRequest(
            "Snapshots cover the account namespace.", detail={"field": "namespace"}
        )
    if key_kind not in Snapshot.KeyKind.values:
        raise InvalidRequest("key must be identifier or subject_key.", detail={"field": "key"})
    rule, data_use = _rule_and_data_use(purpose_key, data_use_key)
    moment = now or timezone.now()
    at = as_of or moment
    size = chunk_size or settings.SNAPSHOT_CHUNK_SUBJECTS
    snapshot_id = uuid.uuid4()
    with transaction.atomic():
        bounds = Subject.objects.filter(namespace=ACCOUNT).aggregate(low=Min("pk"), high=Max("pk"))
        snapshot = Snapshot.objects.create(
            id=snapshot_id,
            created_at=moment,
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label[:200],
            purpose_id=rule.id,
            data_use=data_use,
            as_of=at,
            namespace=namespace,
            key_kind=key_kind,
            # How to read an id the file does not list: as someone the service never saw.
            default_allowed=decide(rule=rule, standing=None, erased_at=None, at=at).allowed,
            expires_at=moment + timedelta(seconds=settings.SNAPSHOT_TTL),
            pseudonym_key_encrypted=pseudonym_key_new(snapshot_id),
            chunk_size=size,
        )
        chunks = []
        if bounds["low"] is not None:
            low, high = bounds["low"], bounds["high"] + 1
            for index, start in enumerate(range(low, high, size)):
                chunks.append(
                    SnapshotChunk(
                        snapshot=snapshot,
                        index=index,
                        subject_pk_low=start,
                        subject_pk_high=min(start + size, high),
                    )
                )
            SnapshotChunk.objects.bulk_create(chunks)
        audit_record(
            actor=actor,
            action="snapshot.create",
            target_type="snapshot",
            target_id=str(snapshot.id),
            detail={
                "purpose": rule.key,
                "data_use": data_use.key if data_use else None,
                "as_of": iso(at),
                "namespace": namespace,
                "key": key_kind,
                "chunks": len(chunks),
            },
        )
        for _ in range(max(1, min(len(chunks), BUILD_MESSAGES))):
            task_queue_on_commit(SNAPSHOT_BUILD_TASK, snapshot_id=str(snapshot.id))
    return snapshot


# --- the build ------------------------------------------------------------------------------


def _claimable(now: datetime) -> Q:
    return Q(status=SnapshotChunk.Status.PENDING) | Q(
        status=SnapshotChunk.Status.RUNNING, lease_until__lte=now
    )


def _chunk_claim(snapshot: Snapshot, now: datetime) -> SnapshotChunk | None:
    """Takes the first range that is waiting or whose lease lapsed (a conditional UPDATE:
    of two workers racing for one range, one wins and the other tries the next)."""
    candidates = SnapshotChunk.objects.filter(_claimable(now), snapshot=snapshot).order_by("index")
    for chunk in candidates[:20]:
        taken = SnapshotChunk.objects.filter(_claimable(now), pk=chunk.pk).update(
            status=SnapshotChunk.Status.RUNNING, lease_until=now + LEASE
        )
        if taken:
            return chunk
    return None


def chunk_table(snapshot: Snapshot, chunk: SnapshotChunk, key: bytes) -> pa.Table:
    """The rows of one range: each subject's pseudonym and the rule's verdict as of the
    snapshot's instant, sorted by pseudonym (the order says nothing of who joined when)."""
    facts = facts_for(connection)
    rule = facts.purpose_rule_of(snapshot.purpose_id)
    with transaction.atomic():
        found = facts.range_standings(
            chunk.subject_pk_low, chunk.subject_pk_high, rule, at=snapshot.as_of, as_of=True
        )
    pks: list[int] = []
    values: list[str] = []
    verdicts = []
    by_identifier = snapshot.key_kind == Snapshot.KeyKind.IDENTIFIER
    decrypt = identity.decrypt_identifier
    for pk, subject_key, encrypted, verdict in zip(
        found.subject_pks, found.keys, found.identifiers_encrypted, found.verdicts, strict=True
    ):
        if by_identifier:
            # Erased people have no identifier left: they cannot be listed by it.
            identifier = decrypt(encrypted, key=subject_key)
            if identifier is None:
                continue
            values.append(identifier)
        else:
            values.append(subject_key)
        pks.append(pk)
        verdicts.append(verdict)
    table = pa.table(
        {
            "pseudonym": pa.array(SubjectHasher(key).digests(values), files.PSEUDONYM),
            "allowed": pa.array([v.allowed for v in verdicts], pa.bool_()),
            "reason": pa.array([v.reason for v in verdicts], pa.string()),
            "subject_pk": pa.array(pks, pa.int64()),
        }
    )
    return table.sort_by("pseudonym")


def _chunk_build(snapshot: Snapshot, chunk: SnapshotChunk) -> None:
    table = chunk_table(snapshot, chunk, pseudonym_key_of(snapshot))
    files.part_write(snapshot.id, chunk.index, table)
    allowed = pc.sum(table["allowed"]).as_py() or 0
    with transaction.atomic():
        SnapshotChunk.objects.filter(pk=chunk.pk, status=SnapshotChunk.Status.RUNNING).update(
            status=SnapshotChunk.Status.DONE,
            lease_until=None,
            allowed_count=allowed,
            denied_count=table.num_rows - allowed,
        )


def _assemble_claim(snapshot: Snapshot, now: datetime) -> bool:
    return bool(
        Snapshot.objects.filter(pk=snapshot.pk, status=Snapshot.Status.PENDING)
        .filter(Q(assemble_lease_until__isnull=True) | Q(assemble_lease_until__lte=now))
        .update(assemble_lease_until=now + LEASE)
    )


def _assemble(snapshot: Snapshot) -> None:
    counts = list(
        SnapshotChunk.objects.filter(snapshot=snapshot)
        .order_by("index")
        .values_list("allowed_count", "denied_count")
    )
    digest = files.assemble(snapshot.id, len(counts))
    allowed = sum(a for a, _ in counts)
    denied = sum(d for _, d in counts)
    with transaction.atomic():
        made_ready = Snapshot.objects.filter(pk=snapshot.pk, status=Snapshot.Status.PENDING).update(
            status=Snapshot.Status.READY,
            allowed_count=allowed,
            denied_count=denied,
            file_sha256=digest,
            assemble_lease_until=None,
        )
        if made_ready:
            audit_record(
                actor=SYSTEM,
                action="snapshot.ready",
                target_type="snapshot",
                target_id=str(snapshot.id),
                detail={"allowed": allowed, "denied": denied, "file_sha256": digest},
            )
    _files_drop_if_gone(snapshot)


def _files_drop_if_gone(snapshot: Snapshot) -> None:
    """Removes what a worker just wrote if the snapshot was deleted or expired meanwhile."""
    status = Snapshot.objects.filter(pk=snapshot.pk).values_list("status", flat=True).first()
    if status not in (Snapshot.Status.PENDING, Snapshot.Status.READY):
        files.remove(snapshot.id)


@dataclass(frozen=True)
class BuildStep:
    # "chunk": one range written (continue in a fresh message); "ready": assembled;
    # "waiting": ranges held by other workers; "done": nothing (left) to build.
    outcome: str

    @property
    def more(self) -> bool:
        return self.outcome == "chunk"


def snapshot_build_step(*, snapshot_id: uuid.UUID | str, now: datetime | None = None) -> BuildStep:
    """One step of a build: one range, or the assembly once every range is done. Safe to
    run twice and from several workers at once."""
    moment = now or timezone.now()
    snapshot = Snapshot.objects.filter(pk=snapshot_id, status=Snapshot.Status.PENDING).first()
    if snapshot is None or snapshot.expires_at <= moment:
        return BuildStep("done")
    try:
        chunk = _chunk_claim(snapshot, moment)
        if chunk is not None:
            _chunk_build(snapshot, chunk)
            _files_drop_if_gone(snapshot)
            return BuildStep("chunk")
        waiting = SnapshotChunk.objects.filter(snapshot=snapshot).exclude(
            status=SnapshotChunk.Status.DONE
        )
        if waiting.exists() or not _assemble_claim(snapshot, moment):
            return BuildStep("waiting")
        _assemble(snapshot)
        return BuildStep("ready")
    except DatabaseError:
        raise  # transient: the lease lets the next message take the range again
    except Exception as exc:
        snapshot_fail(snapshot=snapshot, error=f"{type(exc).__name__}: {exc}")
        raise


def snapshot_build(*, snapshot_id: uuid.UUID | str, now: datetime | None = None) -> str:
    """Every step of a build in this process (tests, management use); the last outcome."""
    while (step := snapshot_build_step(snapshot_id=snapshot_id, now=now)).more:
        pass
    return step.outcome


def snapshots_resume(*, now: datetime | None = None) -> int:
    """Queues a build message for each pending snapshot that nobody is working on (lost
    messages, dead workers); returns how many."""
    moment = now or timezone.now()
    queued = 0
    pending = Snapshot.objects.filter(status=Snapshot.Status.PENDING, expires_at__gt=moment)
    for snapshot in pending.only("id", "assemble_lease_until"):
        busy = SnapshotChunk.objects.filter(
            snapshot=snapshot, status=SnapshotChunk.Status.RUNNING, lease_until__gt=moment
        ).exists()
        assembling = snapshot.assemble_lease_until and snapshot.assemble_lease_until > moment
        if not busy and not assembling:
            task_send(SNAPSHOT_BUILD_TASK, kwargs={"snapshot_id": str(snapshot.id)})
            queued += 1
    return queued


# --- the end of a snapshot: failure, deletion, expiry --------------------------------------


def _destroy(
    *, snapshot: Snapshot, status: str, action: str, actor: Actor, now: datetime, error: str = ""
) -> bool:
    """Destroys the key (and, after commit, the files); False if already destroyed."""
    with transaction.atomic():
        row = Snapshot.objects.select_for_update().filter(pk=snapshot.pk).first()
        if row is None or row.status in (Snapshot.Status.EXPIRED, Snapshot.Status.FAILED):
            destroyed = False
        else:
            row.status = status
            row.pseudonym_key_encrypted = None
            row.expires_at = min(row.expires_at, now)
            row.error = error[:2000]
            row.save(update_fields=["status", "pseudonym_key_encrypted", "expires_at", "error"])
            audit_record(
                actor=actor,
                action=action,
                target_type="snapshot",
                target_id=str(snapshot.pk),
                detail={"status": status},
            )
            destroyed = True
    files.remove(snapshot.pk)
    return destroyed


def snapshot_fail(*, snapshot: Snapshot, error: str) -> None:
    _destroy(
        snapshot=snapshot,
        status=Snapshot.Status.FAILED,
        action="snapshot.fail",
        actor=SYSTEM,
        now=timezone.now(),
        error=error,
    )


def snapshot_delete(*, snapshot: Snapshot, actor: Actor, now: datetime | None = None) -> bool:
    """Deletes the file and destroys the key now: the snapshot reads as expired. False if
    it had already ended (nothing audited then)."""
    return _destroy(
        snapshot=snapshot,
        status=Snapshot.Status.EXPIRED,
        action="snapshot.delete",
        actor=actor,
        now=now or timezone.now(),
    )


def snapshots_expire(*, now: datetime | None = None) -> int:
    """Expires every snapshot past its `expires_at` (file deleted, key destroyed), and
    removes files left by a worker that wrote after its snapshot ended. Safe to run twice."""
    moment = now or timezone.now()
    due = Snapshot.objects.filter(
        status__in=[Snapshot.Status.PENDING, Snapshot.Status.READY], expires_at__lte=moment
    )
    expired = sum(
        _destroy(
            snapshot=snapshot,
            status=Snapshot.Status.EXPIRED,
            action="snapshot.expire",
            actor=SYSTEM,
            now=moment,
        )
        for snapshot in due.only("pk")
    )
    stored = []
    for name in files.stored_ids():
        try:
            stored.append(uuid.UUID(name))
        except ValueError:
            continue
    live = set(
        Snapshot.objects.filter(
            pk__in=stored, status__in=[Snapshot.Status.PENDING, Snapshot.Status.READY]
        ).values_list("pk", flat=True)
    )
    for snapshot_id in stored:
        if snapshot_id not in live:
            files.remove(snapshot_id)
    return expired


# --- usage ----------------------------------------------------------------------------------
