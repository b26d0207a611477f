"""Prometheus metrics at /metrics: who may scrape, what a scrape shows after each fact, route
labels without identifiers, and several gunicorn workers and a Celery worker summed."""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import get_resolver
from django.utils import timezone

from governance.models import OutboxEvent
from retention.models import ErasureRequest
from tests import factories, live
from tests.conftest import assert_error
from tests.live_gunicorn import gunicorn_server
from tests.metrics_scrape import LISTED, drive_every_fact, samples, scrape, value

pytestmark = pytest.mark.django_db

OUTSIDE = "203.0.113.9"


# --- who may scrape -----------------------------------------------------------------------


def test_loopback_may_scrape_by_default():
    assert "governance_http_requests_total" in scrape(Client(REMOTE_ADDR="127.0.0.1"))
    assert "governance_outbox_lag_seconds" in scrape(Client(REMOTE_ADDR="::1"))


def test_any_other_address_is_refused_in_the_error_shape():
    response = Client(REMOTE_ADDR=OUTSIDE).get("/metrics")
    body = assert_error(response, 403, "permission_denied")
    assert "governance_" not in json.dumps(body)


def test_the_bearer_token_lets_any_address_scrape_and_a_wrong_one_does_not(settings):
    outside = Client(REMOTE_ADDR=OUTSIDE)
    assert_error(
        outside.get("/metrics", headers={"Authorization": "Bearer "}), 403, "permission_denied"
    )
    settings.METRICS_BEARER_TOKEN = "scrape-secret-token"
    assert "governance_" in scrape(outside, Authorization="Bearer scrape-secret-token")
    for wrong in (
        "Bearer scrape-secret-toke",
        "Bearer scrape-secret-token2",
        "scrape-secret-token",
    ):
        assert_error(
            outside.get("/metrics", headers={"Authorization": wrong}), 403, "permission_denied"
        )


def test_allowed_networks_replace_loopback(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "fd00::/8"]
    assert "governance_" in scrape(Client(REMOTE_ADDR="10.1.2.3"))
    assert "governance_" in scrape(Client(REMOTE_ADDR="fd00::5"))
    assert_error(Client(REMOTE_ADDR="127.0.0.1").get("/metrics"), 403, "permission_denied")


def test_a_request_relayed_from_outside_by_an_allowed_proxy_is_refused(settings):
    # nginx on an allowed address relays an outside client: its X-Forwarded-For names it.
    settings.TRUSTED_PROXY_COUNT = 1
    relayed = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE)
    assert_error(relayed.get("/metrics"), 403, "permission_denied")
    # A scraper on an allowed address talking to the app port directly sends none.
    assert "governance_" in scrape(Client(REMOTE_ADDR="127.0.0.1"))


def test_a_forged_forwarded_for_does_not_let_an_outside_peer_in(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    forged = Client(REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert_error(forged.get("/metrics"), 403, "permission_denied")


def test_a_scrape_runs_no_session_host_or_https_rule(settings):
    settings.SECURE_SSL_REDIRECT = True  # as in production: /metrics is scraped over http
    response = Client().get("/metrics", headers={"Host": "web:8000"})  # not in ALLOWED_HOSTS
    assert response.status_code == 200
    assert "Set-Cookie" not in response and "Cookie" not in response.get("Vary", "")


def test_only_get_and_head_are_answered():
    response = Client().post("/metrics", "{}", content_type="application/json")
    assert_error(response, 405, "method_not_allowed")
    assert Client().head("/metrics").status_code == 200


# --- what a scrape shows ------------------------------------------------------------------


@pytest.fixture
def receiver() -> Any:
    r = live.Receiver().start()
    yield r
    r.stop()


def test_a_scrape_after_each_fact_shows_every_listed_metric(
    api, receiver, django_capture_on_commit_callbacks
):
    before = scrape()
    drive_every_fact(api, receiver.url, django_capture_on_commit_callbacks)
    text = scrape()
    found = {name for name, got in samples(text).items() if got}
    assert found >= LISTED, sorted(LISTED - found)

    def grew(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    assert grew("governance_consent_events_total", purpose="analytics", action="granted") == 1
    assert grew("governance_check_ids_total", mode="single", purpose="analytics") == 1
    assert grew("governance_check_ids_total", mode="bulk", purpose="analytics") == 2
    assert grew("governance_check_decisions_total", purpose="analytics", reason="granted") == 2
    assert grew("governance_check_decisions_total", purpose="analytics", reason="no_consent") == 1
    assert grew("governance_webhook_deliveries_total", outcome="delivered") == 1
    assert grew("governance_purge_rows_total", target="governance.IdempotencyRecord") == 1
    assert grew("governance_purge_runs_total", status="complete") == 1
    assert grew("governance_celery_task_duration_seconds_count", task="governance.ping") == 1
    assert grew("governance_celery_task_failures_total", task="tests.metrics_failing") == 1
    assert grew("governance_http_requests_total", route="consents", status="201") == 1, [
        s for s in samples(text)["governance_http_requests"] if "consent" in str(s.labels)
    ]
    assert grew("governance_http_request_duration_seconds_count", route="checks") == 1
    # verify_ledger just walked the ledger clean.
    assert value(text, "governance_ledger_verification_age_seconds") < 60
    assert value(text, "governance_ledger_verification_breaks") == 0


def test_route_labels_are_pattern_names_never_paths(api):
    secret = f"routelabel-{uuid.uuid4().hex}"
    for path in (
        f"/api/v1/subjects/{secret}/consents",
        f"/api/v1/subjects/{secret}/checks/analytics",
        f"/api/v1/subjects/{secret}/history",
        f"/api/v1/no-such-{secret}",
        f"/nowhere/{secret}",
    ):
        api.get(path)
    text = scrape()
    assert secret not in text
    routes = {s.labels["route"] for s in samples(text)["governance_http_requests"]}
    known = _view_names()
    assert routes <= known | {"unmatched", "metrics"}, routes - known
    assert "subject-consents" in routes and "unmatched" in routes


def _view_names() -> set[str]:
    """Every namespaced URL pattern name of the URL conf."""
    found: set[str] = set()

    def walk(patterns: list[Any], namespace: str) -> None:
        for p in patterns:
            if hasattr(p, "url_patterns"):
                inner = f"{namespace}{p.namespace}:" if p.namespace else namespace
                walk(p.url_patterns, inner)
            elif p.name:
                found.add(namespace + p.name)

    walk(get_resolver().url_patterns, "")
    return found


def test_gauges_read_at_scrape_time(purposes):
    factories.record("gauge-bob", analytics=True)
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert value(scrape(), "governance_outbox_lag_seconds") >= 300
    OutboxEvent.objects.update(dispatched_at=timezone.now())
    assert value(scrape(), "governance_outbox_lag_seconds") == 0
    now = timezone.now()
    ErasureRequest.objects.create(subject_key="k1", created_at=now, due_at=now + timedelta(days=30))
    ErasureRequest.objects.create(subject_key="k2", created_at=now, due_at=now - timedelta(days=1))
    ErasureRequest.objects.create(
        subject_key="k3", created_at=now, due_at=now - timedelta(days=1), status="complete"
    )
    text = scrape()
    assert value(text, "governance_rights_requests_open", kind="erasure") == 2
    assert value(text, "governance_rights_requests_overdue", kind="erasure") == 1
    assert value(text, "governance_rights_requests_open", kind="access") == 0
    assert value(text, "governance_webhook_deliveries_parked") == 0
    # Before any full verification the ledger's age is infinite: an alert fires.
    assert math.isinf(value(text, "governance_ledger_verification_age_seconds"))
    call_command("verify_ledger", "--subject", "1", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert math.isinf(value(scrape(), "governance_ledger_verification_age_seconds"))


# --- the request id -----------------------------------------------------------------------


def test_a_sane_request_id_is_kept_and_anything_else_replaced():
    kept = Client().get("/healthz", headers={"X-Request-ID": "abc123-DEF456_789"})
    assert kept["X-Request-ID"] == "abc123-DEF456_789"
    for insane in ("short", "has space in it", "x" * 65, "mail@example.com", "a\"b'c<d>e"):
        replaced = Client().get("/healthz", headers={"X-Request-ID": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced["X-Request-ID"]), insane
    assert Client().get("/healthz")["X-Request-ID"] != Client().get("/healthz")["X-Request-ID"]


# --- several processes --------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_and_a_celery_worker_are_summed_and_share_the_request_id(tmp_path):
    """Two gunicorn workers and a Celery worker, each with PROMETHEUS_MULTIPROC_DIR and
    LOG_FORMAT=json: the web's scrape sums both workers' requests, the worker serves its own
    tasks' metrics, and the request id of a consent write is in gunicorn's access log and in
    the log of the task it queued."""
    factories.seed_purposes()
    _, key = factories.api_client(scopes=["consent:write"])
    web_dir, worker_dir = tmp_path / "web-metrics", tmp_path / "worker-metrics"
    web_dir.mkdir()
    worker_dir.mkdir()
    access_log = tmp_path / "access.log"
    worker_port = live.free_port()
    common = {"LOG_FORMAT": "json"}
    with (
        live.celery_worker(
            **common,
            PROMETHEUS_MULTIPROC_DIR=str(worker_dir),
            CELERY_METRICS_PORT=str(worker_port),
        ),
        gunicorn_server(
            workers=2,
            env={**common, "PROMETHEUS_MULTIPROC_DIR": str(web_dir)},
            args=[
                "--access-logfile",
                str(access_log),
                "--logger-class",
                "governance.logging.RedactingGunicornLogger",
            ],
        ) as base,
    ):
        session = requests.Session()
        for _ in range(20):
            # A new connection each time, so both workers answer some.
            assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        request_id = f"rid-{uuid.uuid4().hex}"
        written = session.post(
            f"{base}/api/v1/consents",
            json={
                "subject_id": f"json-log-{request_id}",
                "decisions": [{"purpose": "analytics", "granted": True}],
                "indication_method": "button",
            },
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id},
            timeout=10,
        )
        assert written.status_code == 201, written.text
        assert written.headers["X-Request-ID"] == request_id
        # The consent write queued the outbox dispatch; the worker logs it with the id.
        log = Path(settings.VAR_DIR) / "test-worker.log"
        live.wait_for(lambda: request_id in log.read_text(errors="replace"), what="task log")
        tagged = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if request_id in line and line.startswith("{")
        ]
        assert tagged, "no JSON line of the worker carries the request id"
        assert all(json.loads(line)["request_id"] == request_id for line in tagged)
        assert any("outbox_dispatch" in json.loads(line)["message"] for line in tagged)
        web = requests.get(f"{base}/metrics", timeout=10).text
        assert value(web, "governance_http_requests_total", route="healthz") >= 20
        assert value(web, "governance_consent_events_total", purpose="analytics") == 1
        pids = {p.name.split("_")[-1] for p in web_dir.glob("*.db")}
        assert len(pids) >= 2, "both gunicorn workers wrote their values"
        worker = requests.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=10).text
        assert (
            value(worker, "governance_celery_task_duration_seconds_count", task="governance.ping")
            >= 1
        )
        assert "governance_outbox_lag_seconds" not in worker  # the web's job, not the worker's
    access = _json_lines(access_log)
    (line,) = [a for a in access if a["path"] == "/api/v1/consents"]
    assert line["request_id"] == request_id and line["status"] == "201"
    assert all(a["logger"] == "gunicorn.access" for a in access)


def test_the_worker_scrape_follows_the_same_access_rule(settings):
    from governance.metrics import worker_metrics_app

    def call(path: str, peer: str, **headers: str) -> tuple[str, bytes]:
        answered: list[str] = []
        environ = {"PATH_INFO": path, "REMOTE_ADDR": peer, **headers}
        body = b"".join(worker_metrics_app(environ, lambda status, _: answered.append(status)))
        return answered[0], body

    status, body = call("/metrics", "127.0.0.1")
    assert status.startswith("200") and b"governance_celery_task_failures_total" in body
    assert b"governance_outbox_lag_seconds" not in body  # the database's gauges: web only
    status, body = call("/metrics", OUTSIDE)
    assert status.startswith("403")
    assert json.loads(body)["error"]["code"] == "permission_denied"
    settings.METRICS_BEARER_TOKEN = "worker-token"
    status, _ = call("/metrics", OUTSIDE, HTTP_AUTHORIZATION="Bearer worker-token")
    assert status.startswith("200")
    assert call("/elsewhere", "127.0.0.1")[0].startswith("404")
