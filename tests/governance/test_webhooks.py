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


def test_redeliver_from_admin_puts_parked_delivery_back_and_audits(purposes, client, staff_client):
    _subscribe("https://a.example.com/")
    _record("alice", analytics=True)
    services.outbox_fan_out()
    WebhookDelivery.objects.update(status=WebhookDelivery.Status.PARKED, attempts=8)
    staff = User.objects.create_superuser("dpo", "dpo@example.com", "pw")
    staff_client(staff, client)
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


def test_admin_creates_a_subscription_showing_its_secret_once_and_refuses_bad_urls(
    client, staff_client
):
    staff_client(User.objects.create_superuser("dpo", "dpo@example.com", "pw"), client)
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


# --- where a delivery may go: addresses, ports, DNS answers ------------------------------

PUBLIC_ADDRESSES = [
    "93.184.216.34",
    "8.8.8.8",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    # Wrapped forms are judged by the IPv4 they wrap.
    "::ffff:8.8.8.8",  # IPv4-mapped
    "::8.8.8.8",  # IPv4-compatible
    "64:ff9b::808:808",  # NAT64, well-known prefix
    "2002:808:808::1",  # 6to4
    "2001:0:808:808::f7f7:f7f7",  # Teredo: server 8.8.8.8, client 8.8.8.8
]

NON_PUBLIC_ADDRESSES = [
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.127.255.254",
    "127.0.0.1",
    "10.0.0.1",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "240.0.0.1",  # reserved
    "::1",
    "fc00::1",
    "fec0::1",  # site-local
    "2001:db8::1",  # documentation
    "3fff::1",  # documentation (RFC 9637)
    "100::1",  # discard-only
    "::ffff:0:808:808",  # IPv4-translated, never routed
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::6440:1",  # NAT64 of 100.64.0.1
    "64:ff9b:1::808:808",  # local-use NAT64 prefix: inside a site, whatever it embeds
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:6440:1::1",  # 6to4 of 100.64.0.1
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "::ffff:100.64.0.1",  # IPv4-mapped
    "2001:0:808:808::f5ff:fffe",  # Teredo: client 10.0.0.1
    "2001:0:a00:1::f7f7:f7f7",  # Teredo: server 10.0.0.1
]

# Refused even where private receivers are allowed.
NEVER_ALLOWED_ADDRESSES = [
    "169.254.169.254",
    "100.100.100.200",
    "fd00:ec2::254",
    "fe80::1",
    "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
    "0.1.2.3",
    "::",
    "224.0.0.1",
    "ff0e::1",
    "::ffff:169.254.169.254",
    "::169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "2001:0:808:808::5601:5601",  # Teredo: client 169.254.169.254
]


def _url_for(address: str) -> str:
    return f"http://[{address}]/hook" if ":" in address else f"http://{address}/hook"


class FakeNetwork:
    """DNS for names under `.test` and a network that never leaves loopback.

    `answers[name]` lists one answer per lookup (the last one repeats). Every connection is
    recorded; one to a loopback port in `listening` is made for real, any other is refused
    unsent.
    """

    def __init__(self, monkeypatch: Any) -> None:
        import socket

        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []
        self.listening: set[int] = set()
        self._getaddrinfo = socket.getaddrinfo
        self._create_connection = socket.create_connection
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", self.create_connection)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        import socket

        if host not in self.answers:
            return self._getaddrinfo(host, port, *args, **kwargs)
        self.lookups.append(host)
        answers = self.answers[host]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
            for a in answer
        ]

    def create_connection(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        import ipaddress
        import socket

        self.connects.append(address)
        host, port = address[0], int(address[1])
        for *_, sockaddr in self.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            if ipaddress.ip_address(sockaddr[0]).is_loopback and port in self.listening:
                return self._create_connection((sockaddr[0], port), *args, **kwargs)
        raise ConnectionRefusedError(f"test network: nothing sent to {host}:{port}")


@pytest.fixture
def network(monkeypatch: Any) -> FakeNetwork:
    return FakeNetwork(monkeypatch)


def _send(url: str) -> webhooks.SendResult:
    return webhooks.send(url=url, body=b'{"id": "1"}', headers={"X-Webhook-Id": "1"}, timeout=2)


@pytest.mark.parametrize(
    ("address", "public"),
    [(a, True) for a in PUBLIC_ADDRESSES] + [(a, False) for a in NON_PUBLIC_ADDRESSES],
)
def test_webhook_addresses_must_be_public_after_unwrapping_ipv4(
    api, network, settings, address, public
):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    # At subscription, as a literal in the URL.
    response = api.post("/api/v1/webhooks", {"url": _url_for(address)})
    if public:
        assert response.status_code == 201, response.content
    else:
        assert_error(response, 400, "invalid_request")
    # At delivery, as what the host name resolves to.
    network.answers["hooks.example.test"] = [[address]]
    result = _send("http://hooks.example.test/hook")
    assert not result.ok and result.status_code is None
    if public:
        assert network.connects == [(address, 80)], result.error
    else:
        assert "resolves to" in result.error and network.connects == []


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
def test_non_public_addresses_are_allowed_with_private_networks_on(network, settings, address):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert webhooks.url_check(_url_for(address)) == _url_for(address)
    network.answers["hooks.example.test"] = [[address]]
    _send("http://hooks.example.test/hook")
    assert network.connects == [(address, 80)]


@pytest.mark.parametrize("address", NEVER_ALLOWED_ADDRESSES)
@pytest.mark.parametrize("private_allowed", [False, True])
def test_link_local_metadata_multicast_and_unspecified_are_refused_in_every_form(
    network, settings, address, private_allowed
):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = private_allowed
    with pytest.raises(webhooks.WebhookUrlRefused):
        webhooks.url_check(_url_for(address))
    network.answers["hooks.example.test"] = [[address]]
    result = _send("http://hooks.example.test/hook")
    assert "resolves to" in result.error and network.connects == []


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0xa9.254.169.254"]
)
def test_numeric_host_spellings_are_judged_as_the_address_they_name(settings, host):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(webhooks.WebhookUrlRefused):
        webhooks.url_check(f"http://{host}/hook")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://hooks.example.com/", True),
        ("https://hooks.example.com/", True),
        ("http://hooks.example.com:80/", True),
        ("http://hooks.example.com:443/", True),
        ("https://hooks.example.com:8443/", True),  # listed
        ("https://hooks.example.com:9000/", True),  # in the listed range
        ("https://hooks.example.com:9099/", True),
        ("https://hooks.example.com:9100/", False),
        ("https://hooks.example.com:8999/", False),
        ("http://hooks.example.com:8080/", False),
        ("http://hooks.example.com:25/", False),
        ("http://hooks.example.com:22/", False),
        ("http://93.184.216.34:6379/", False),
        ("http://hooks.example.com:0/", False),
        ("http://hooks.example.com:99999/", False),
    ],
)
@pytest.mark.parametrize("private_allowed", [False, True])
def test_webhook_ports_are_80_443_and_those_listed_whatever_the_address(
    api, settings, url, allowed, private_allowed
):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = private_allowed
    settings.WEBHOOK_ALLOWED_PORTS = (8443, range(9000, 9100))
    response = api.post("/api/v1/webhooks", {"url": url})
    if allowed:
        assert response.status_code == 201, response.content
        return
    assert_error(response, 400, "invalid_request")
    # A subscription made before the rule (or the setting) changed is refused at delivery,
    # before any lookup or connection.
    result = webhooks.send(url=url, body=b"{}", headers={}, timeout=1)
    assert (result.ok, result.status_code) == (False, None) and "port" in result.error


def test_private_networks_do_not_lift_the_port_rule(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_ALLOWED_PORTS = ()
    with pytest.raises(webhooks.WebhookUrlRefused, match="port"):
        webhooks.url_check("http://127.0.0.1:6379/")
    assert webhooks.url_check("http://127.0.0.1/") == "http://127.0.0.1/"


def test_allowed_ports_setting_reads_ports_and_ranges(monkeypatch):
    from governance.env import ImproperlyConfiguredEnv, env_ports

    monkeypatch.setenv("WEBHOOK_ALLOWED_PORTS", "8080, 9000-9099,8443")
    assert env_ports("WEBHOOK_ALLOWED_PORTS") == (8080, range(9000, 9100), 8443)
    monkeypatch.setenv("WEBHOOK_ALLOWED_PORTS", "")
    assert env_ports("WEBHOOK_ALLOWED_PORTS") == ()
    for bad in ("0", "65536", "http", "9100-9000", "1-2-3"):
        monkeypatch.setenv("WEBHOOK_ALLOWED_PORTS", bad)
        with pytest.raises(ImproperlyConfiguredEnv):
            env_ports("WEBHOOK_ALLOWED_PORTS")


def test_a_name_with_any_refused_answer_is_refused_without_connecting(network, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    network.answers["hooks.mixed.test"] = [["93.184.216.34", "127.0.0.1"]]
    result = _send("http://hooks.mixed.test/hook")
    assert not result.ok and result.status_code is None and "resolves to" in result.error
    assert network.connects == []


def test_delivery_connects_to_the_checked_address_not_a_second_dns_answer(
    network, settings, receiver
):
    """DNS rebinding: the name answers a public address first and loopback after. The
    delivery connects to the address it checked, and the loopback receiver hears nothing."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    network.answers["hooks.rebind.test"] = [["93.184.216.34"], ["127.0.0.1"]]
    network.listening.add(receiver.port)
    result = _send(f"http://hooks.rebind.test:{receiver.port}/hook")
    assert not receiver.received
    assert network.connects == [("93.184.216.34", receiver.port)]
    assert network.lookups == ["hooks.rebind.test"]  # once, for the check
    assert not result.ok and "ConnectionRefusedError" in result.error


def test_pinned_delivery_keeps_the_host_name_in_the_host_header(network, receiver):
    network.answers["hooks.pinned.test"] = [["127.0.0.1"]]
    network.listening.add(receiver.port)
    result = _send(f"http://hooks.pinned.test:{receiver.port}/hook?tenant=7#frag")
    assert result == webhooks.SendResult(True, 200, "")
    (got,) = receiver.received
    assert got["headers"]["Host"] == f"hooks.pinned.test:{receiver.port}"
    assert got["path"] == "/hook?tenant=7"
    assert got["headers"]["X-Webhook-Id"] == "1" and got["raw"] == b'{"id": "1"}'
    assert network.lookups == ["hooks.pinned.test"]
    assert network.connects == [("127.0.0.1", receiver.port)]


def test_redirect_is_an_answer_not_followed(receiver):
    receiver.respond = lambda body: (302, 0.0)
    result = webhooks.send(url=receiver.url, body=b"{}", headers={}, timeout=2)
    assert result == webhooks.SendResult(False, 302, "HTTP 302")
    assert len(receiver.received) == 1


def _tls_contexts(tmp_path: Any, *, certificate_for: str) -> tuple[Any, Any]:
    """A throwaway CA, a server context with its certificate for one name, and a client
    context that trusts the CA and checks host names as the default context does."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, *, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test ca", ca_key, "test ca", ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(certificate_for, leaf_key, "test ca", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    return server, client


@pytest.mark.parametrize("certificate_for", ["hooks.tls.test", "other.tls.test"])
def test_https_delivery_sends_the_host_name_as_sni_and_verifies_the_certificate_for_it(
    network, monkeypatch, tmp_path, certificate_for
):
    server_context, client_context = _tls_contexts(tmp_path, certificate_for=certificate_for)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)
    monkeypatch.setattr(webhooks, "_tls_context", lambda: client_context)
    network.answers["hooks.tls.test"] = [["127.0.0.1"]]
    tls_receiver = live.Receiver(tls=server_context).start()
    network.listening.add(tls_receiver.port)
    try:
        result = webhooks.send(
            url=f"https://hooks.tls.test:{tls_receiver.port}/hook",
            body=b'{"id": "1"}',
            headers={},
            timeout=2,
        )
    finally:
        tls_receiver.stop()
    assert names == ["hooks.tls.test"]
    if certificate_for == "hooks.tls.test":
        assert result == webhooks.SendResult(True, 200, "")
        (got,) = tls_receiver.received
        assert got["headers"]["Host"] == f"hooks.tls.test:{tls_receiver.port}"
    else:
        # Verified against the URL's name, not the address connected to.
        assert not result.ok and "SSLCertVerificationError" in result.error
        assert not tls_receiver.received
