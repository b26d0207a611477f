"""API clients and their keys, stored idempotent answers, the audit trail, the outbox and
webhooks, signing keys, and staff authenticators."""

from __future__ import annotations

import time
import uuid

from django.db import models
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from governance import crypto


class Scope(models.TextChoices):
    CONSENT_WRITE = "consent:write", "Record consents and withdrawals, mint subject tokens"
    CONSENT_READ = "consent:read", "Read a subject's consents, history and receipts"
    CHECKS = "checks", "Consent checks, data uses, decisions"
    RIGHTS = "rights", "Erasure and access requests"
    ADMIN = "admin", "Retention policies and runs, webhooks"


class ApiClient(models.Model):
    class Kind(models.TextChoices):
        SECRET = "secret", "Secret (sk_...)"
        PUBLISHABLE = "publishable", "Publishable (pk_...)"

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SECRET)
    scopes = models.JSONField(default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def is_authenticated(self) -> bool:
        # DRF puts the client in request.user; this lets permission checks treat it as a user.
        return True

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class ApiKey(models.Model):
    """One key of a client; several live at once while a rotation is under way."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.client.name})"


class IdempotencyRecord(models.Model):
    """The first answer to a request sent with an Idempotency-Key, replayed for retries.

    The stored body never holds the subject identifier: it is put back from the request.
    `request_hash` is keyed (governance.idempotency), and `subject_key` lets erasure find the
    records of the subject a request named.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # NULL: the request named no subject (an empty string would look like a key to match).
    subject_key = models.CharField(max_length=64, null=True, blank=True)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="idempotency_unique_key")
        ]
        # One plain btree (db_index would add a pattern index on PostgreSQL that no query uses).
        indexes = [models.Index(fields=["subject_key"], name="idempotency_subject_key")]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key}"


class AuditEvent(models.Model):
    """Who changed what, when and from where: every API write and admin change, appended."""

    at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    actor_key = models.CharField(
        max_length=16, blank=True, help_text="Prefix of the API key used, for API actors."
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=128, blank=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"


class OutboxEvent(models.Model):
    """An announcement written in the same transaction as the change it announces.

    Per-subject `seq` lets receivers order events and spot stale redeliveries. The subject's
    identifier is kept encrypted and only decrypted for delivery.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=64, db_index=True)
    # Indexed by outbox_subject_seq (subject_key, seq), which serves lookups by key alone.
    subject_key = models.CharField(max_length=64, blank=True)
    subject_identifier_encrypted = models.BinaryField(null=True, editable=False)
    seq = models.PositiveIntegerField(default=0)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["subject_key", "seq"], name="outbox_subject_seq")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.id}"


class WebhookSubscription(models.Model):
    """A receiver of outbox events. Its signing secret is shown once and kept encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120, blank=True)
    url = models.URLField(max_length=2000)
    event_types = models.JSONField(
        default=list, blank=True, help_text="Event types to receive; empty means all."
    )
    secret_encrypted = models.BinaryField(editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One outbox event on its way to one subscription: attempts, outcome, next try."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        PARKED = "parked", "Parked (gave up; redeliver from the admin)"

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the event so the per-subject ordering check is one index lookup.
    subject_key = models.CharField(max_length=64, blank=True)
    seq = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"], name="webhook_delivery_once")
        ]
        indexes = [
            models.Index(
                fields=["subscription", "subject_key", "seq"], name="webhook_delivery_order"
            ),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.subscription_id} ({self.status})"


class SigningKey(models.Model):
    """An ES256 key that signs receipts. The private half is stored encrypted; the newest
    key signs, older ones stay published in the JWKS for SIGNING_KEY_PUBLISH_DAYS after
    their last signature, so what they signed keeps verifying as long as it is kept."""

    kid = models.CharField(max_length=64, unique=True, editable=False)
    algorithm = models.CharField(max_length=16, default="ES256", editable=False)
    private_key_encrypted = models.BinaryField(editable=False)
    public_jwk = models.JSONField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(
        null=True, blank=True, help_text="No longer signs; still published for verification."
    )
    last_signed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Its latest signature (to within an hour): a retired key stays published "
        "for SIGNING_KEY_PUBLISH_DAYS after it.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.kid}"


def staff_totp_aad(user_id: int) -> bytes:
    """Binds a TOTP seed to its user: a seed copied onto another user's row does not open."""
    return f"staff-totp:{user_id}".encode()


# models.Model named again: django-otp has no type stubs, so mypy sees a model only so.
class StaffTotpDevice(TimestampMixin, ThrottlingMixin, Device, models.Model):
    """A staff member's authenticator app (TOTP, RFC 6238), one per user.

    django-otp's own TOTPDevice keeps the seed as plaintext hex; the service must use the
    seed again, so it is stored encrypted (governance.crypto) and re-encrypted on key
    rotation. Written by governance.staff (enrolment) and by `verify_token`, which
    django-otp's device protocol puts on the model: a used time step is remembered so a
    code never verifies twice, and failures back off exponentially.
    """

    key_encrypted = models.BinaryField(editable=False)
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(default=6)
    tolerance = models.PositiveSmallIntegerField(
        default=1, help_text="Time steps either side of now that a code may come from."
    )
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(
        default=-1, help_text="The time step of the last code accepted; later ones only."
    )

    objects: models.Manager[StaffTotpDevice]  # django-otp's DeviceManager

    class Meta(Device.Meta):
        verbose_name = "staff authenticator (TOTP)"
        verbose_name_plural = "staff authenticators (TOTP)"
        constraints = [models.UniqueConstraint(fields=["user"], name="staff_totp_one_per_user")]

    def __str__(self) -> str:
        return f"{self.name} of {self.user}"

    @property
    def bin_key(self) -> bytes:
        return crypto.decrypt(bytes(self.key_encrypted), aad=staff_totp_aad(self.user_id))

    def totp(self) -> TOTP:
        return TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)

    def verify_token(self, token: object) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        try:
            code = int(str(token).strip())
        except ValueError:
            code = -1
        totp = self.totp()
        totp.time = time.time()
        if code >= 0 and totp.verify(code, self.tolerance, self.last_t + 1):
            self.last_t = totp.t()
            self.drift = totp.drift
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save()
            return True
        self.throttle_increment(commit=True)
        return False

    def get_throttle_factor(self) -> int:
        return 1
