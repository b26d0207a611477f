"""What staff place on a person: restriction periods (Art. 18) and notes on actions taken;
both free text that may hold personal data, kept encrypted and erased with the person."""

from __future__ import annotations

import uuid

from django.db import models

from consent.models.core import Subject


class SubjectNote(models.Model):
    """A staff note on an action taken for a person (how they asked, what was checked).

    Free text that may hold personal data: kept only encrypted (associated data: the row's
    id) and deleted with the person's erasure (retention.services.rights)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=64)
    receipt_id = models.UUIDField(null=True, blank=True)
    author = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    note_encrypted = models.BinaryField(editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"note {self.id} ({self.action})"


class Restriction(models.Model):
    """A period of restricted processing (GDPR Art. 18) of one subject, covering
    [started_at, ended_at): every check inside it denies with reason `restricted`. Periods
    are history: a lifted one is ended, never changed otherwise or removed (except with the
    person, by erasure). The reason is free text and may hold personal data: encrypted, its
    associated data the row's id (so a re-keyed subject keeps reading it)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: (subject, started_at) leads with it.
    subject = models.ForeignKey(
        Subject, on_delete=models.CASCADE, related_name="restrictions", db_index=False
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    reason_encrypted = models.BinaryField(editable=False)
    started_by = models.CharField(max_length=200, blank=True)
    ended_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["subject_id", "started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject"],
                condition=models.Q(ended_at__isnull=True),
                name="restriction_one_open_per_subject",
            ),
            models.CheckConstraint(
                condition=models.Q(ended_at__isnull=True)
                | models.Q(ended_at__gte=models.F("started_at")),
                name="restriction_ends_after_start",
            ),
        ]
        indexes = [models.Index(fields=["subject", "started_at"], name="restriction_by_subject")]

    def __str__(self) -> str:
        return f"restriction of {self.subject_id} from {self.started_at:%Y-%m-%d %H:%M:%S}"
