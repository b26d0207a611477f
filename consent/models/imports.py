"""Imports of consent records from other tools (consent.imports): the import, its encrypted
batches and the external ids already applied."""

from __future__ import annotations

import uuid

from django.db import models


class ConsentImport(models.Model):
    """A file of consent records from another tool (or an export of ours): validated whole,
    then applied in batches (consent.imports). Its records wait, encrypted, in its batches
    until applied; the row stays as the record of what was imported, by whom, when."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be applied"
        RUNNING = "running", "Being applied"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    format = models.CharField(max_length=16)
    mapping = models.CharField(max_length=200, blank=True)
    file_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Records in the file, records a mapping said to leave out, batches.
    total = models.PositiveIntegerField(default=0)
    ignored = models.PositiveIntegerField(default=0)
    batch_count = models.PositiveIntegerField(default=0)
    # Records written, and records skipped because their external id was imported before.
    applied = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # When a batch was last applied: an import that stops progressing is resumed.
    progressed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.id} ({self.status})"


class ConsentImportBatch(models.Model):
    """One batch of an import's validated records, encrypted (associated data: the import's
    id and the batch's index) until it is applied, then destroyed (set to NULL)."""

    consent_import = models.ForeignKey(
        ConsentImport, on_delete=models.CASCADE, related_name="batches"
    )
    index = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    records_encrypted = models.BinaryField(null=True, editable=False)
    done = models.BooleanField(default=False)

    class Meta:
        ordering = ["consent_import", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["consent_import", "index"], name="consent_import_batch_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.consent_import_id}#{self.index}"


class ImportedRecord(models.Model):
    """One record an import applied: what makes imports idempotent by external id. The
    external id may hold personal data (an e-mail in a receipt id), so only its keyed hash
    is kept, and unique."""

    external_id_hash = models.CharField(max_length=64, unique=True)
    consent_import = models.ForeignKey(ConsentImport, on_delete=models.CASCADE, related_name="+")
    event_id = models.UUIDField()

    def __str__(self) -> str:
        return f"{self.external_id_hash[:12]}… -> {self.event_id}"
