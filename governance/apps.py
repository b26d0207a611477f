from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.apps import AppConfig
from django.core.signals import request_finished
from django.db.models.signals import post_migrate


def _audit_floor_sync(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from governance.audit import audit_floor_sync

    audit_floor_sync(using=using)


def _outbox_gauges(now: datetime) -> Iterator[Any]:
    from governance.metrics import Gauge
    from governance.selectors import deliveries_parked_count, outbox_lag_seconds

    yield Gauge(
        "governance_outbox_lag_seconds",
        "Age of the oldest outbox event not yet dispatched to webhooks (0: none waits).",
        [((), outbox_lag_seconds(now=now))],
    )
    yield Gauge(
        "governance_webhook_deliveries_parked",
        "Webhook deliveries given up on, waiting for a redelivery from the admin.",
        [((), deliveries_parked_count())],
    )


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from django.contrib import admin

        from governance import signing, webhooks
        from governance.admin_audit import audit_every_admin
        from governance.api import schema_auth  # noqa: F401  (OpenAPI for Bearer keys)
        from governance.logging import request_id_clear
        from governance.memo import memos_clear_on_change
        from governance.metrics import scrape_gauges_register
        from governance.models import (
            ApiClient,
            ApiKey,
            OutboxEvent,
            SigningKey,
            WebhookSubscription,
        )
        from governance.reencrypt import register_encrypted_field

        # A request's id is forgotten once its response is closed (governance.middleware).
        request_finished.connect(request_id_clear, dispatch_uid="request_id_clear")
        # The database's own floor under audit purges follows the setting at every migrate.
        post_migrate.connect(_audit_floor_sync, sender=self, dispatch_uid="audit_floor_sync")
        # A saved key or client clears this process's memo of key lookups at once.
        memos_clear_on_change(ApiKey, ApiClient)
        # Every app's admin module is imported by now (django.contrib.admin comes first).
        audit_every_admin(admin.site)
        register_encrypted_field(
            OutboxEvent, "subject_identifier_encrypted", lambda e: e.subject_key.encode()
        )
        register_encrypted_field(
            WebhookSubscription, "secret_encrypted", lambda s: webhooks.secret_aad(s.pk)
        )
        register_encrypted_field(
            SigningKey, "private_key_encrypted", lambda k: signing.private_key_aad(k.kid)
        )
        scrape_gauges_register("outbox_and_webhooks", _outbox_gauges)
