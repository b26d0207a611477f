"""Retention policies, legal holds, purge runs, the enforcement lease and rights requests."""

from __future__ import annotations

import uuid

from django.db import models


class PolicyAction(models.TextChoices):
    DELETE = "delete", "Delete rows"
    ANONYMIZE = "anonymize", "Anonymise rows"


class RetentionPolicy(models.Model):
    """How long one registered target keeps its rows, and what happens after."""

    name = models.CharField(max_length=120, unique=True)
    target = models.CharField(max_length=200, help_text="A registered target, e.g. consent.X.")
    keep_for = models.DurationField(help_text="Rows older than this (by the timestamp) go.")
    action = models.CharField(max_length=16, choices=PolicyAction.choices, default="delete")
    condition = models.JSONField(
        default=dict,
        blank=True,
        help_text='Extra filter on the target fields, e.g. {"dispatched_at__isnull": false}.',
    )
    batch_size = models.PositiveIntegerField(default=10_000)
    enabled = models.BooleanField(default=True)
    purpose = models.ForeignKey(
        "consent.Purpose",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="A withdrawal of this purpose removes the subject's rows in this target.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["target", "name"]
        verbose_name_plural = "retention policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(batch_size__gte=1), name="policy_batch_size_gte_1"
            )
        ]

    def __str__(self) -> str:
        return self.name


class LegalHold(models.Model):
    """Keeps a subject's rows (everywhere) or a policy's rows from purging and erasure."""

    subject_key = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="HMAC-SHA256 of the identifier."
    )
    namespace = models.CharField(max_length=16, default="account")
    policy = models.ForeignKey(
        RetentionPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="holds"
    )
    reason = models.CharField(max_length=500)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    (~models.Q(subject_key="") & models.Q(policy__isnull=True))
                    | (models.Q(subject_key="") & models.Q(policy__isnull=False))
                ),
                name="legal_hold_subject_xor_policy",
            )
        ]

    def __str__(self) -> str:
        on = f"policy {self.policy_id}" if self.policy_id else f"subject {self.subject_key[:12]}…"
        return f"hold on {on}"


class PurgeRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Finished with errors"
        ABANDONED = "abandoned", "Abandoned (worker died; the next run finished the job)"
        SKIPPED = "skipped", "Skipped (another run held the lease)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dry_run = models.BooleanField(default=False)
    trigger = models.CharField(max_length=32, default="beat")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    examined = models.BigIntegerField(default=0)
    removed = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    # Files deleted from storage (a lake table's vacuum), apart from the rows removed.
    files_removed = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{'dry ' if self.dry_run else ''}run {self.id} ({self.status})"


class PurgeRunItem(models.Model):
    """One policy's part of a run: rows examined, removed (or that would go), held back, and
    files its target deleted from storage (`Target.settle`)."""

    run = models.ForeignKey(PurgeRun, on_delete=models.CASCADE, related_name="items")
    policy = models.ForeignKey(
        RetentionPolicy, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    policy_name = models.CharField(max_length=120)
    target = models.CharField(max_length=200)
    action = models.CharField(max_length=16)
    cutoff = models.DateTimeField()
    status = models.CharField(max_length=16, default="running")
    examined = models.BigIntegerField(default=0)
    removed = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    files_removed = models.BigIntegerField(default=0)
    chunks = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"{self.policy_name}: {self.removed} removed"


class Lease(models.Model):
    """One row per exclusive job: a conditional UPDATE takes it, so it works on any database."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'}"


class Watermark(models.Model):
    """How far a scanning task has read (withdrawal propagation reads the ledger)."""

    name = models.CharField(max_length=64, unique=True)
    position = models.DateTimeField(null=True, blank=True)
    last_id = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.position}"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    HELD = "held", "Blocked by a legal hold"
    FAILED = "failed", "Failed"


class RightsRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject_key = models.CharField(max_length=64, db_index=True)
    namespace = models.CharField(max_length=16, default="account")
    status = models.CharField(
        max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    created_at = models.DateTimeField(db_index=True)
    due_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # How staff verified the requester's identity, and why the due date was extended
    # (Art. 12(3), once): free text that may hold personal data, so encrypted (associated
    # data: see retention.services.requests_notes.note_aad) and destroyed by the person's erasure.
    verification_note_encrypted = models.BinaryField(null=True, editable=False)
    extension_reason_encrypted = models.BinaryField(null=True, editable=False)
    extended_at = models.DateTimeField(null=True, blank=True)
    extended_by = models.CharField(max_length=200, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class ErasureRequest(RightsRequest):
    """Right to be forgotten. The identifier is kept encrypted only until the announcement
    is written and the request is done; then it is destroyed."""

    identifier_encrypted = models.BinaryField(null=True, editable=False)
    progress = models.JSONField(default=dict, blank=True)
    decision_ids = models.JSONField(default=list, blank=True)
    tombstone_id = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"erasure {self.id} ({self.status})"


class AccessRequest(RightsRequest):
    """Right of access. The export holds personal data, so it is stored encrypted."""

    export_encrypted = models.BinaryField(null=True, editable=False)

    def __str__(self) -> str:
        return f"access {self.id} ({self.status})"
