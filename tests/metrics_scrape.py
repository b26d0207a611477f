"""Scrapes of /metrics for the metrics tests and the dashboard and alert test: every fact the
metrics count made to happen once, then the scrape read back by prometheus_client's parser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from governance import services
from governance.actors import Actor
from governance.celery import app as celery_app
from governance.models import IdempotencyRecord, WebhookDelivery
from governance.tasks import ping_task
from retention.models import RetentionPolicy
from retention.services.enforcement import retention_enforce
from tests import factories

# Every metric the issue lists, by family name (counters without `_total`).
LISTED = {
    "governance_http_requests",
    "governance_http_request_duration_seconds",
    "governance_consent_events",
    "governance_check_ids",
    "governance_check_decisions",
    "governance_outbox_lag_seconds",
    "governance_webhook_deliveries",
    "governance_webhook_deliveries_parked",
    "governance_purge_rows",
    "governance_purge_runs",
    "governance_rights_requests_open",
    "governance_rights_requests_overdue",
    "governance_celery_task_duration_seconds",
    "governance_celery_task_failures",
    "governance_ledger_verification_age_seconds",
}


def scrape(client: Client | None = None, **headers: str) -> str:
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def samples(text: str) -> dict[str, list[Sample]]:
    """Family name -> its samples."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


@celery_app.task(name="tests.metrics_failing")
def failing_task() -> None:
    raise RuntimeError("a task that fails, for the failure counter")


def drive_every_fact(api: Any, receiver_url: str, on_commit: Any) -> None:
    """A consent write, a single and a bulk check, a webhook delivery, a purge run, a Celery
    task and a failing one, and a ledger verification: each metric has a sample after it.
    `on_commit` is pytest-django's django_capture_on_commit_callbacks (events are counted
    once committed)."""
    services.webhook_subscription_create(url=receiver_url, actor=Actor.system("test"))
    with on_commit(execute=True):
        response = api.post(
            "/api/v1/consents",
            {
                "subject_id": "metrics-alice",
                "decisions": [{"purpose": "analytics", "granted": True}],
                "indication_method": "button",
            },
        )
    assert response.status_code == 201, response.content
    assert api.get("/api/v1/subjects/metrics-alice/checks/analytics").status_code == 200
    bulk = api.post(
        "/api/v1/checks", {"purpose": "analytics", "subject_ids": ["metrics-alice", "nobody"]}
    )
    assert bulk.status_code == 200, bulk.content
    services.outbox_fan_out()
    for delivery in WebhookDelivery.objects.all():
        services.webhook_delivery_attempt(delivery_id=delivery.pk)
    client, _ = factories.api_client(scopes=[])
    IdempotencyRecord.objects.create(
        client=client, key="old", request_hash="h", status_code=201, response_body={}
    )
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(days=2))
    policy = RetentionPolicy.objects.create(
        name="metrics idempotency", target="governance.IdempotencyRecord", keep_for=timedelta(1)
    )
    retention_enforce(policy_ids=[policy.pk])
    assert ping_task.apply(args=["metrics"]).get() == "pong:metrics"
    assert failing_task.apply().failed()
    call_command("verify_ledger", stdout=open("/dev/null", "w"))  # noqa: SIM115
