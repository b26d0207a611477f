"""Lakehouse snapshots: a signed, expiring Parquet file of one purpose's decisions, and the
chunks it is built in (consent.snapshots)."""

from __future__ import annotations

import uuid

from django.db import models

from consent.models.core import DataUse, Purpose


class Snapshot(models.Model):
    """A signed, expiring Parquet file of one purpose's decisions for a whole namespace.

    Keyed by pseudonyms under a random per-snapshot key, kept encrypted here and destroyed
    (set to NULL) with the file when the snapshot expires or is deleted. The file lives under
    SNAPSHOT_DIR, named by the snapshot's id; the row stays as metadata.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Being built"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (file and key destroyed)"

    class KeyKind(models.TextChoices):
        IDENTIFIER = "identifier", "HMAC of the identifier"
        SUBJECT_KEY = "subject_key", "HMAC of the subject key (hex)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+")
    data_use = models.ForeignKey(
        DataUse, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    as_of = models.DateTimeField()
    namespace = models.CharField(max_length=16, default="account")
    key_kind = models.CharField(max_length=16, choices=KeyKind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    default_allowed = models.BooleanField()
    allowed_count = models.PositiveIntegerField(default=0)
    denied_count = models.PositiveIntegerField(default=0)
    file_sha256 = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    pseudonym_key_encrypted = models.BinaryField(null=True, editable=False)
    # Subject pks [subject_pk_low, subject_pk_high) are built in chunks of `chunk_size` pks.
    chunk_size = models.PositiveIntegerField()
    # Whoever assembles the chunks holds this lease (restartable like the chunks' own).
    assemble_lease_until = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"snapshot {self.id} ({self.status})"


class SnapshotChunk(models.Model):
    """One key range of a snapshot's build: claimed by a worker under a lease, written to
    its own part file, then marked done; a worker that dies leaves it for the next claim."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Claimed"
        DONE = "done", "Written"

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    subject_pk_low = models.BigIntegerField()
    subject_pk_high = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    lease_until = models.DateTimeField(null=True, blank=True)
    allowed_count = models.PositiveIntegerField(default=0)
    denied_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["snapshot", "index"]
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "index"], name="snapshot_chunk_unique")
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_id}#{self.index} ({self.status})"
