"""Purposes, notices, subjects, the append-only consent ledger and the current state."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class LegalBasis(models.TextChoices):
    CONSENT = "consent", "Consent (Art. 6(1)(a))"
    CONTRACT = "contract", "Contract (Art. 6(1)(b))"
    LEGAL_OBLIGATION = "legal_obligation", "Legal obligation (Art. 6(1)(c))"
    VITAL_INTEREST = "vital_interest", "Vital interest (Art. 6(1)(d))"
    PUBLIC_TASK = "public_task", "Public task (Art. 6(1)(e))"
    LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest (Art. 6(1)(f))"


class Purpose(models.Model):
    key = models.SlugField(max_length=64, unique=True, help_text="Stable key, e.g. ml_training.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    legal_basis = models.CharField(max_length=32, choices=LegalBasis.choices)
    dpv_concept = models.CharField(max_length=120, blank=True, help_text="W3C DPV purpose.")
    tcf_purpose_ids = models.JSONField(default=list, blank=True, help_text="IAB TCF ids.")
    data_categories = models.JSONField(default=list, blank=True)
    consent_ttl = models.DurationField(
        null=True, blank=True, help_text="Consent reads as expired this long after it is given."
    )
    gpc_opt_out = models.BooleanField(
        default=False, help_text="A Global Privacy Control signal refuses this purpose."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class NoticeVersion(models.Model):
    """One version of a purpose's notice. Published versions are never edited."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="notice_versions")
    version = models.PositiveIntegerField()
    material = models.BooleanField(
        default=False,
        help_text="A material change invalidates consent given to earlier versions.",
    )
    text_hash = models.CharField(max_length=64, editable=False)
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["purpose", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["purpose", "version"], name="notice_version_unique"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="notice_version_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose.key} v{self.version}"


class NoticeText(models.Model):
    notice_version = models.ForeignKey(
        NoticeVersion, on_delete=models.CASCADE, related_name="texts"
    )
    language = models.CharField(max_length=16)
    title = models.CharField(max_length=200)
    body = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["notice_version", "language"], name="notice_text_one_per_language"
            )
        ]

    def __str__(self) -> str:
        return f"{self.notice_version} [{self.language}]"


class Subject(models.Model):
    """A data subject, found by a keyed hash; the identifier itself is only kept encrypted."""

    class Namespace(models.TextChoices):
        ACCOUNT = "account", "Account identifier"
        DEVICE = "device", "Device id issued to a browser"

    namespace = models.CharField(max_length=16, choices=Namespace.choices, default="account")
    key = models.CharField(max_length=64, help_text="HMAC-SHA256 of the identifier, hex.")
    key_version = models.PositiveSmallIntegerField(default=1)
    identifier_encrypted = models.BinaryField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)
    # The head of this subject's event chain, advanced under the row lock with each event.
    last_seq = models.PositiveIntegerField(default=0)
    chain_head = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "key"], name="subject_unique_key")
        ]
        permissions = [
            ("export_person", "Can download a person's record and access exports"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}:{self.key[:12]}…"


class Action(models.TextChoices):
    GRANTED = "granted", "Granted"
    REFUSED = "refused", "Refused"
    WITHDRAWN = "withdrawn", "Withdrawn"
    EXPIRED = "expired", "Expired"


# The one ledger event without a purpose: the subject's identifier was rectified (Art. 16).
# Never a consent state; every reader of consent state filters events by purpose.
RECTIFIED = "rectified"
EVENT_ACTIONS = [*Action.choices, (RECTIFIED, "Identifier rectified")]


class Source(models.TextChoices):
    BANNER = "banner", "Banner"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Import"
    GPC = "gpc", "Global Privacy Control"
    SYSTEM = "system", "System (expiry)"


class IndicationMethod(models.TextChoices):
    BUTTON = "button", "Clicked a button"
    CHECKBOX = "checkbox", "Ticked a box"
    SIGNED_FORM = "signed_form", "Signed a form"
    API = "api", "Explicit choice relayed by an API client"
    GPC = "gpc", "Global Privacy Control signal"
    IMPORT = "import", "Imported record"
    SYSTEM = "system", "Recorded by the service"
    # Recognised so that they can be refused by name: they are never consent.
    PRE_TICKED = "pre_ticked", "Pre-ticked box (not consent)"
    IMPLIED = "implied", "Implied or continued browsing (not consent)"


AFFIRMATIVE_METHODS = frozenset(
    {
        IndicationMethod.BUTTON,
        IndicationMethod.CHECKBOX,
        IndicationMethod.SIGNED_FORM,
        IndicationMethod.API,
        IndicationMethod.IMPORT,
    }
)


class GivenBy(models.TextChoices):
    SUBJECT = "subject", "The subject"
    GUARDIAN = "guardian", "A parent or guardian"


class ActorType(models.TextChoices):
    API_CLIENT = "api_client", "API client"
    STAFF = "staff", "Staff user"
    SYSTEM = "system", "The service"


class ConsentEvent(models.Model):
    """The ledger: one row per decision, appended and never changed.

    The database refuses UPDATE always and DELETE outside the guarded purge path. Actors are
    stored as plain values, not foreign keys, so no cascade can ever touch this table.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: the chain position (subject, seq) leads with it.
    subject = models.ForeignKey(
        Subject, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    seq = models.PositiveIntegerField(help_text="Position in the subject's chain, from 1.")
    # None only for a `rectified` event, which is about the subject, not a purpose. No index
    # of its own: consent_event_purpose_time leads with it.
    purpose = models.ForeignKey(
        Purpose,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
    )
    notice_version = models.PositiveIntegerField()
    language = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=16, choices=EVENT_ACTIONS)
    effective_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    indication_method = models.CharField(max_length=16, choices=IndicationMethod.choices)
    given_by = models.CharField(max_length=16, choices=GivenBy.choices, default=GivenBy.SUBJECT)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    receipt_id = models.UUIDField(db_index=True)
    context_digest = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["subject_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "seq"], name="consent_event_chain_position"),
        ]
        indexes = [
            models.Index(fields=["subject", "purpose", "effective_at"], name="consent_event_as_of"),
            models.Index(fields=["recorded_at"], name="consent_event_recorded"),
            # A purpose's events over a time window (consent rates, the dashboard).
            models.Index(fields=["purpose", "effective_at"], name="consent_event_purpose_time"),
        ]

    def __str__(self) -> str:
        about = self.purpose.key if self.purpose is not None else "subject"
        return f"{self.action} {about} @ {self.effective_at:%Y-%m-%d %H:%M:%S}"

    @property
    def decided_purpose(self) -> Purpose:
        """The purpose a consent decision is about: every event has one but `rectified`."""
        if self.purpose is None:
            raise ValueError(f"event {self.id} ({self.action}) is about no purpose")
        return self.purpose


class ConsentContext(models.Model):
    """Proof context of one receipt, kept lean (hashed IP and user agent).

    Retention may delete it: the events keep its digest, so the chain still verifies.
    """

    receipt_id = models.UUIDField(unique=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    user_agent_hash = models.CharField(max_length=64, blank=True)
    page = models.CharField(max_length=2000, blank=True)
    locale = models.CharField(max_length=16, blank=True)
    jurisdiction = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"context of {self.receipt_id}"


class ConsentState(models.Model):
    """Current status per (subject, purpose), written in the same transaction as its event."""

    subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="states")
    # No index of its own: the unique (purpose, subject) leads with it.
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    status = models.CharField(max_length=16, choices=Action.choices)
    notice_version = models.PositiveIntegerField()
    since = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    event_id = models.UUIDField()
    gpc = models.BooleanField(default=False, help_text="The standing decision came from GPC.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["purpose", "subject"], name="consent_state_unique")
        ]

    def __str__(self) -> str:
        return f"{self.subject_id}/{self.purpose_id}: {self.status}"


class LedgerPurgeGuard(models.Model):
    """A row here, visible only inside the purging transaction, lets the trigger allow DELETE.

    Inserted and removed within one transaction by the purge path, so no other connection
    ever sees it; the same mechanism works on PostgreSQL and SQLite.
    """

    reason = models.CharField(max_length=64)

    def __str__(self) -> str:
        return self.reason


class SubjectTombstone(models.Model):
    """What is left when a whole subject history is purged (expiry or erasure).

    No personal data: the subject key (keyed hash) and its key version, the final chain hash
    (the one checkpoint the chain check accepts), when, why and what was removed. Erasure
    replays after a backup restore work from these rows.
    """

    class Reason(models.TextChoices):
        EXPIRED_HISTORY = "expired_history", "Expired history (retention)"
        ERASURE = "erasure", "Erasure request"

    subject_key = models.CharField(max_length=64, db_index=True)
    key_version = models.PositiveSmallIntegerField()
    namespace = models.CharField(max_length=16, default="account")
    final_chain_hash = models.CharField(max_length=64, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    removed = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)
    # The keys the subject had before rectifications, oldest first, each with when it was
    # left ({"key", "until"}): an erasure replay after a backup restore finds the person
    # under any of them. NULL: none (ledger_purge_subject, in SQL, leaves it so).
    former_keys = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"tombstone {self.subject_key[:12]}… ({self.reason})"


class SubjectKeyChange(models.Model):
    """An identifier rectification (Art. 16): from chain position `from_seq` (its `rectified`
    event) on, the subject's events are hashed with `new_key`; before it, with `old_key`.

    Events are never re-hashed: the verifier takes each event's key from these rows. Only
    keyed hashes, like the tombstone; erasure removes them with the history.
    """

    # No index of its own: the unique (subject, from_seq) leads with it.
    subject = models.ForeignKey(
        Subject, on_delete=models.CASCADE, related_name="key_changes", db_index=False
    )
    old_key = models.CharField(max_length=64)
    new_key = models.CharField(max_length=64)
    from_seq = models.PositiveIntegerField()
    event_id = models.UUIDField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["subject_id", "from_seq"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "from_seq"], name="key_change_position")
        ]
        # One plain btree (db_index would add a pattern index on PostgreSQL no query uses).
        indexes = [models.Index(fields=["old_key"], name="key_change_old_key")]

    def __str__(self) -> str:
        return f"{self.old_key[:12]}… -> {self.new_key[:12]}… from seq {self.from_seq}"


class DataUse(models.Model):
    """A registered processing activity (an ML job, an export): a record of processing."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="data_uses")
    owner = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    data_categories = models.JSONField(default=list, blank=True)
    recipients = models.JSONField(default=list, blank=True)
    datasets = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Decision(models.Model):
    """What one bulk or streamed check answered: who asked, for what, as of when, how many."""

    class Status(models.TextChoices):
        PENDING = "pending", "In progress"
        COMPLETE = "complete", "Complete"
        ABANDONED = "abandoned", "Abandoned (client went away)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    data_use = models.ForeignKey(DataUse, null=True, blank=True, on_delete=models.PROTECT)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="decisions")
    as_of = models.DateTimeField()
    as_of_requested = models.BooleanField(default=False)
    mode = models.CharField(max_length=16, default="bulk")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    allowed_count = models.PositiveIntegerField(default=0)
    denied_count = models.PositiveIntegerField(default=0)
    id_set_digest = models.CharField(max_length=64, blank=True)
    lineage = models.BooleanField(default=False)
    erased_since = models.PositiveIntegerField(default=0)
    # The model trained on the data, named by a snapshot usage upload (mode "snapshot").
    model = models.CharField(max_length=200, blank=True)
    # The snapshot a usage upload drew on (its file hash goes on the dataset card).
    snapshot = models.ForeignKey(
        "Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # How many candidates were denied, per reason (aggregate counts only).
    reasons = models.JSONField(default=dict, blank=True)
    # The consent-skew report (consent.skew) when the check carried attributes: the
    # aggregate only, small cells suppressed; the attributes themselves are never stored.
    skew = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"decision {self.id} ({self.purpose_id})"


class DecisionLineage(models.Model):
    """One allowed subject of a decision that asked for lineage (bulk-loaded)."""

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="+")
    subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["decision", "subject"], name="lineage_unique")
        ]
        indexes = [models.Index(fields=["subject"], name="lineage_by_subject")]

    def __str__(self) -> str:
        return f"{self.decision_id}/{self.subject_id}"


class LedgerVerification(models.Model):
    """One run of the whole ledger's chain check (`verify_ledger`, or its nightly task)."""

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField()
    trigger = models.CharField(max_length=32)
    subjects = models.PositiveBigIntegerField(default=0)
    events = models.PositiveBigIntegerField(default=0)
    breaks = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"ledger verification {self.started_at:%Y-%m-%d %H:%M} ({self.breaks} breaks)"

    @property
    def ok(self) -> bool:
        return self.breaks == 0
