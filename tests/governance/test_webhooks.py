"""Webhooks: subscriptions, signed delivery through a real worker to a real receiver."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from django.contrib.auth.models import User

from consent import services as consent_services
from governance import services, webhooks
from governance.actors import Actor
from governance.models import AuditEvent, OutboxEvent, WebhookDelivery, WebhookSubscription
from governance.tasks import outbox_dispatch_task
from tests import factories, live
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db


def _record(subject_id: str, **granted: bool) -> Any:
    return consent_services.consent_record(
        subject_id=subject_id,
        decisions=[
            consent_services.DecisionInput(purpose=k, granted=v) for k, v in granted.items()
        ],
        actor=Actor.system("test"),
    )


def _subscribe(url: str, *event_types: str) -> tuple[WebhookSubscription, str]:
    return services.webhook_subscription_create(
        url=url, event_types=event_types, actor=Actor.system("test")
    )


# --- subscriptions ----------------------------------------------------------------------


def test_create_webhook_shows_secret_once_and_stores_it_encrypted(api):
    response = api.post(
        "/api/v1/webhooks",
        {"url": "https://hooks.example.com/consent", "event_types": ["consent.withdrawn"]},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    stored = WebhookSubscription.objects.get(pk=body["id"])
    assert body["secret"].encode() not in bytes(stored.secret_encrypted)
    assert (
        webhooks.secret_decrypt(stored.secret_encrypted, subscription_id=stored.pk)
        == (body["secret"])
    )
    assert AuditEvent.objects.filter(action="webhook.create", target_id=body["id"]).exists()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/",
        "http://user:pw@hooks.example.com/",
        "not a url",
    ],
)
def test_webhook_urls_that_are_not_http_or_point_at_metadata_are_refused(api, url):
    assert_error(api.post("/api/v1/webhooks", {"url": url}), 400, "invalid_request")
    assert not WebhookSubscription.objects.exists()


def test_unknown_event_type_is_refused(api):
    response = api.post(
        "/api/v1/webhooks", {"url": "https://h.example.com/", "event_types": ["consent.nope"]}
    )
    assert_error(response, 400, "invalid_request")


def test_signature_made_with_another_secret_is_detected():
    body = b'{"id":"1"}'
    header = webhooks.signature("whsec_right", timestamp=1_700_000_000, body=body)
    assert webhooks.signature_verify("whsec_right", header=header, body=body, now=1_700_000_010)
    assert not webhooks.signature_verify("whsec_wrong", header=header, body=body, now=1_700_000_010)
    assert not webhooks.signature_verify(
        "whsec_right", header=header, body=body + b" ", now=1_700_000_010
    )
    # Too old: a replay outside the tolerance.
    assert not webhooks.signature_verify("whsec_right", header=header, body=body, now=1_700_009_999)


def test_backoff_grows_exponentially_with_jitter_and_is_capped(settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 10
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 300
    for attempts, full in [(1, 10), (2, 20), (3, 40), (10, 300)]:
        samples = {webhooks.backoff_seconds(attempts) for _ in range(20)}
        assert all(full / 2 <= s <= full for s in samples)
        assert len(samples) > 1


def test_sweeper_is_scheduled_by_beat(settings):
    from governance.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["outbox-sweep"]
    assert entry["task"] == "governance.outbox_dispatch" == outbox_dispatch_task.name
    assert entry["task"] in app.tasks


def test_delivery_to_a_refused_address_fails_without_sending():
    result = webhooks.send(url="http://169.254.169.254/latest", body=b"{}", headers={}, timeout=1)
    assert not result.ok and "link-local" in result.error


def test_fan_out_creates_one_delivery_per_interested_subscription(purposes):
    everything, _ = _subscribe("https://a.example.com/")
    withdrawals, _ = _subscribe("https://b.example.com/", "consent.withdrawn")
    _record("alice", analytics=True)
    _record("alice", analytics=False)
    assert len(services.outbox_fan_out()) == 2
    assert services.outbox_fan_out() == []  # twice is harmless
    assert WebhookDelivery.objects.filter(subscription=everything).count() == 2
    only = WebhookDelivery.objects.get(subscription=withdrawals)
    assert only.event.event_type == "consent.withdrawn"
    assert not OutboxEvent.objects.filter(dispatched_at__isnull=True).exists()


def test_redeliver_from_admin_puts_parked_delivery_back_and_audits(purposes, client):
    _subscribe("https://a.example.com/")
    _record("alice", analytics=True)
    services.outbox_fan_out()
    WebhookDelivery.objects.update(status=WebhookDelivery.Status.PARKED, attempts=8)
    staff = User.objects.create_superuser("dpo", "dpo@example.com", "pw")
    client.force_login(staff)
    delivery = WebhookDelivery.objects.get()
    response = client.post(
        "/admin/governance/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert AuditEvent.objects.filter(action="webhook.redeliver", actor_label="dpo").exists()


# --- live: a real worker and a real receiver ----------------------------------------------

WORKER_ENV = {
    "WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
    "WEBHOOK_BACKOFF_MAX_SECONDS": "0.8",
    "WEBHOOK_TIMEOUT_SECONDS": "1",
    "WEBHOOK_MAX_ATTEMPTS": "6",
}


@pytest.fixture(scope="module")
def worker(django_db_setup: Any, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock(), live.celery_worker(**WORKER_ENV) as proc:
        yield proc


@pytest.fixture
def receiver() -> Any:
    r = live.Receiver().start()
    yield r
    r.stop()


def _by_subject(received: list[dict[str, Any]]) -> dict[str, list[int]]:
    order: dict[str, list[int]] = defaultdict(list)
    for r in received:
        order[r["body"]["subject"]["id"]].append(r["body"]["seq"])
    return order


def _all_settled() -> bool:
    return not WebhookDelivery.objects.filter(status="pending").exists() and not (
        OutboxEvent.objects.filter(dispatched_at__isnull=True).exists()
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_event_arrives_once_signed(worker, receiver):
    factories.seed_purposes()
    _, secret = _subscribe(receiver.url)
    _record("alice", analytics=True, ml_training=True)
    _record("bob", analytics=False)
    _record("alice", analytics=False)
    expected = OutboxEvent.objects.count()
    assert expected == 4
    live.wait_for(lambda: len(receiver.accepted()) >= expected, what="all events delivered")
    live.wait_for(_all_settled, what="deliveries settled")
    got = receiver.accepted()
    ids = [r["body"]["id"] for r in got]
    assert sorted(ids) == sorted(str(e.pk) for e in OutboxEvent.objects.all())
    assert len(set(ids)) == len(ids) == expected
    for r in got:
        headers = r["headers"]
        assert headers["X-Webhook-Id"] == r["body"]["id"]
        assert webhooks.signature_verify(
            secret, header=headers["X-Webhook-Signature"], body=r["raw"]
        )
        assert not webhooks.signature_verify(
            "whsec_wrong", header=headers["X-Webhook-Signature"], body=r["raw"]
        )
    assert _by_subject(got) == {"alice": [1, 2, 3], "bob": [1]}
    first = json.loads(got[0]["raw"])
    assert first["type"].startswith("consent.") and first["subject"]["key"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_receiver_down_then_back_gets_every_event_in_subject_order(worker):
    factories.seed_purposes()
    receiver = live.Receiver()  # its port is closed until started
    _subscribe(receiver.url)
    for round_ in range(3):
        for name in ("alice", "bob"):
            _record(name, analytics=round_ % 2 == 0, ml_training=True)
    expected = OutboxEvent.objects.count()
    live.wait_for(
        lambda: WebhookDelivery.objects.filter(attempts__gte=2).exists(),
        what="failed attempts while the receiver is down",
    )
    receiver.start()
    try:
        live.wait_for(lambda: len(receiver.accepted()) >= expected, what="catch-up")
        live.wait_for(_all_settled, what="deliveries settled")
        order = _by_subject(receiver.accepted())
        assert order == {"alice": list(range(1, 7)), "bob": list(range(1, 7))}
        assert not WebhookDelivery.objects.filter(status="parked").exists()
    finally:
        receiver.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_broker_down_during_writes_outbox_keeps_events_and_delivery_catches_up(
    worker, receiver, caplog
):
    factories.seed_purposes()
    _subscribe(receiver.url)
    with live.broker_down():
        _record("carol", analytics=True)
        _record("dave", analytics=True, ml_training=False)
        _record("carol", analytics=False)
    assert "broker unavailable" in caplog.text
    assert OutboxEvent.objects.filter(dispatched_at__isnull=True).count() == 4
    assert not receiver.received
    # The broker is back: beat's sweeper runs the same task.
    outbox_dispatch_task.delay()
    live.wait_for(lambda: len(receiver.accepted()) >= 4, what="catch-up after broker outage")
    live.wait_for(_all_settled, what="deliveries settled")
    assert _by_subject(receiver.accepted()) == {"carol": [1, 2], "dave": [1, 2]}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_failing_or_slow_receiver_does_not_block_other_subscribers(worker, receiver):
    factories.seed_purposes()
    failing = live.Receiver().start()
    slow = live.Receiver().start()
    failing.respond = lambda body: (500, 0.0)
    slow.respond = lambda body: (200, 3.0)  # beyond the worker's 1 s timeout
    try:
        _subscribe(failing.url)
        _subscribe(slow.url)
        good, _ = _subscribe(receiver.url)
        for name in ("erin", "frank", "gina"):
            _record(name, analytics=True)
        live.wait_for(lambda: len(receiver.accepted()) >= 3, what="good receiver served")
        live.wait_for(
            lambda: (
                WebhookDelivery.objects.filter(subscription=good, status="delivered").count() == 3
            ),
            what="good deliveries recorded",
        )
        live.wait_for(
            lambda: WebhookDelivery.objects.filter(status="parked").count() == 6,
            timeout=60,
            what="failing and slow deliveries parked",
        )
        parked = WebhookDelivery.objects.filter(status="parked").first()
        assert parked is not None and parked.attempts == 6
    finally:
        failing.stop()
        slow.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_parked_event_does_not_hold_back_later_ones_and_redelivery_is_recognisably_stale(
    worker, receiver
):
    factories.seed_purposes()
    broken = {"on": True}
    receiver.respond = lambda body: (500 if broken["on"] and body["seq"] == 1 else 200, 0.0)
    _subscribe(receiver.url)
    _record("hana", analytics=True)
    _record("hana", analytics=False)
    _record("hana", ml_training=True)
    live.wait_for(lambda: len(receiver.accepted()) >= 2, what="later events delivered")
    assert [r["body"]["seq"] for r in receiver.accepted()] == [2, 3]
    parked = WebhookDelivery.objects.get(status="parked")
    assert parked.seq == 1
    broken["on"] = False
    services.webhook_delivery_redeliver(deliveries=[parked], actor=Actor.system("test"))
    live.wait_for(lambda: len(receiver.accepted()) >= 3, what="redelivery")
    stale = receiver.accepted()[-1]["body"]
    assert stale["seq"] == 1 and stale["id"] == str(parked.event_id)


def test_admin_creates_a_subscription_showing_its_secret_once_and_refuses_bad_urls(client):
    client.force_login(User.objects.create_superuser("dpo", "dpo@example.com", "pw"))
    add = "/admin/governance/webhooksubscription/add/"
    refused = client.post(add, {"url": "http://169.254.169.254/latest", "active": "on"})
    assert refused.status_code == 200 and b"link-local" in refused.content
    assert not WebhookSubscription.objects.exists()
    response = client.post(
        add,
        {
            "name": "crm",
            "url": "https://crm.example.com/hook",
            "event_types": ["consent.withdrawn"],
            "active": "on",
        },
        follow=True,
    )
    sub = WebhookSubscription.objects.get()
    secret = webhooks.secret_decrypt(sub.secret_encrypted, subscription_id=sub.pk)
    assert secret.encode() in response.content  # shown once, in the admin's message
    assert sub.event_types == ["consent.withdrawn"]
    assert (
        secret.encode()
        not in client.get(f"/admin/governance/webhooksubscription/{sub.pk}/change/").content
    )
    assert AuditEvent.objects.filter(action="webhook.create", actor_label="dpo").exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://localhost/hook",
        "http://10.0.0.5/x",
        "http://[::1]/x",
        "https://192.168.1.1/y",
    ],
)
def test_private_and_loopback_receivers_are_refused_unless_allowed(url, settings):
    from governance.webhooks import WebhookUrlRefused, url_check

    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(WebhookUrlRefused):
        url_check(url)
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert url_check(url) == url
