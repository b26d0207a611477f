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
    # None only for a `rectified` event, which is about the subject, not a purpose.
    purpose = models.ForeignKey(
        Purpose, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
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


class Property(models.Model):
    """A website or app that shows a consent banner, bound to one publishable key.

    The property points at its key (an ApiClient of kind publishable): the key knows nothing
    of properties, so the dependency points from consent/ toward governance/.
    """

    name = models.CharField(max_length=120, unique=True)
    api_client = models.OneToOneField(
        "governance.ApiClient",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="consent_property",
        help_text="Its publishable key (pk_...).",
    )
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text='Origins the banner may call from, e.g. ["https://shop.example"].',
    )
    default_language = models.CharField(max_length=16, default="en")
    purposes = models.ManyToManyField(Purpose, related_name="properties", blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "properties"

    def __str__(self) -> str:
        return self.name


class BannerText(models.Model):
    """The banner's own words in one language (the purposes' words come from their notices)."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="texts")
    language = models.CharField(max_length=16)
    title = models.CharField(max_length=200, default="Your privacy choices")
    description = models.TextField(
        default="We ask for your consent before we use your data for the purposes below."
    )
    accept_all = models.CharField(max_length=60, default="Accept all")
    reject_all = models.CharField(max_length=60, default="Reject all")
    customise = models.CharField(max_length=60, default="Customise")
    save_choices = models.CharField(max_length=60, default="Save my choices")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "language"], name="banner_text_one_per_language"
            )
        ]

    def __str__(self) -> str:
        return f"{self.property} [{self.language}]"


class SubjectLink(models.Model):
    """A device's choices carried over to an account subject: appended, never rewritten.

    One row per linking that happened; `carried` lists the purposes whose latest device
    decision was newer than the account's and was therefore appended to the account's chain.
    """

    device_subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="+")
    account_subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="+")
    property = models.ForeignKey(Property, null=True, on_delete=models.SET_NULL, related_name="+")
    receipt_id = models.UUIDField(null=True, blank=True)
    carried = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["device_subject", "account_subject"], name="link_pair")]

    def __str__(self) -> str:
        return f"{self.device_subject_id} -> {self.account_subject_id}"


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


class BannerShown(models.Model):
    """How many banner configuration answers asked the person, per property and UTC day.

    Counted in Redis on the banner's hot path and copied here by a beat task
    (consent.reports.shown); without Redis (the embedded stack) counted here directly.
    """

    day = models.DateField()
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["day", "property"]
        constraints = [
            models.UniqueConstraint(fields=["day", "property"], name="banner_shown_per_day")
        ]
        # The dashboard's rate, GPC and re-consent panels (aggregates over every person),
        # hosted by the reports' own counter model: a role seeing purposes does not get it.
        permissions = [("view_consent_reports", "Can see consent rates and other reports")]

    def __str__(self) -> str:
        return f"{self.property_id} {self.day}: {self.count}"


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
