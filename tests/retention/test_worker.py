"""Retention with real processes: a Celery worker on the Redis broker, a worker killed
mid-purge, and consent writes from threads while a purge runs (real PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from consent import identity, services
from consent.models import ConsentEvent, Subject
from governance.actors import Actor
from governance.celery import app
from governance.models import AuditEvent
from retention.models import ErasureRequest, PurgeRun, PurgeRunItem, RetentionPolicy
from retention.services import enforcement, holds, policies
from retention.tasks import retention_enforce_task
from tests import factories
from tests.retention.conftest import chain_verifies

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "features"]),
    pytest.mark.slow,
]

ROOT = Path(__file__).resolve().parents[2]
STAFF = Actor.system("test")


def wait_for(condition: Any, *, timeout: float = 60.0, what: str = "") -> Any:
    """Polls with a deadline (a real process is being waited for, not time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or condition}")


@pytest.fixture(autouse=True)
def _default_policies() -> None:
    # An earlier transactional test may have flushed the seeded rows: seed them again.
    policies.policies_seed_defaults()


def _db_url(alias: str) -> str:
    s = connections[alias].settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery -A governance worker` on this test run's Redis db and test databases."""
    app.control.purge()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _db_url("default"),
        "EXTERNAL_DATABASE_URL_FEATURES": _db_url("features"),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "CELERY_RESULT_BACKEND": str(settings.CELERY_RESULT_BACKEND),
    }
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "governance",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"retention-test-{uuid.uuid4().hex[:8]}@%h",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        token = uuid.uuid4().hex
        result = app.send_task("governance.ping", args=[token])
        assert result.get(timeout=60) == f"pong:{token}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()
        app.control.purge()


def _seed_audit(rows: int, *, days_ago: int, subject_key: str = "") -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO governance_auditevent "
            "(at, actor_type, actor_id, actor_label, actor_key, action, target_type, target_id, "
            "ip_hash, detail) SELECT now() - make_interval(days => %s) - g * interval '1 second', "
            "'system', '', 'seed', '', 'seed', '', '', '', "
            "jsonb_build_object('subject_key', %s::text) FROM generate_series(1, %s) g",
            [days_ago, subject_key, rows],
        )


def _audit_count(**filters: Any) -> int:
    return AuditEvent.objects.filter(action="seed", **filters).count()


def test_a_real_worker_enforces_policies_and_carries_out_erasures(worker, make_api):
    policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    _seed_audit(50, days_ago=7 * 365)
    _seed_audit(5, days_ago=1)
    run = enforcement.run_queue(dry_run=False, trigger="test", actor=STAFF)
    done = wait_for(
        lambda: PurgeRun.objects.filter(pk=run.pk, status__in=["complete", "failed"]).first(),
        what="the worker to finish the run",
    )
    item = done.items.get(policy=policy)
    assert (item.status, item.removed) == ("complete", 50), item.error
    assert _audit_count() == 5

    purposes = factories.seed_purposes()
    assert purposes
    factories.record("worker-subject", analytics=True)
    api = make_api("rights")
    request_id = api.post("/api/v1/erasure-requests", {"subject_id": "worker-subject"}).json()["id"]
    wait_for(
        lambda: ErasureRequest.objects.filter(pk=request_id, status="complete").exists(),
        what="the worker to carry out the erasure",
    )
    subject = Subject.objects.get(key=identity.subject_key("worker-subject"))
    assert subject.erased_at is not None and not ConsentEvent.objects.filter(subject=subject)


def test_a_worker_killed_mid_purge_loses_nothing_and_the_next_run_finishes(worker):
    policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    RetentionPolicy.objects.filter(pk=policy.pk).update(batch_size=40)
    RetentionPolicy.objects.exclude(pk=policy.pk).update(enabled=False)
    holds.hold_place(reason="litigation", actor=STAFF, subject_id="held-person")
    held_key = identity.subject_key("held-person")
    _seed_audit(40_000, days_ago=7 * 365)
    _seed_audit(500, days_ago=7 * 365, subject_key=held_key)
    _seed_audit(500, days_ago=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE governance_auditevent")

    retention_enforce_task.delay()
    item = wait_for(
        lambda: PurgeRunItem.objects.filter(policy=policy, chunks__gte=3).first(),
        what="the purge to be under way",
    )
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    item.refresh_from_db()
    old = timezone.now() - timedelta(days=30)
    expired_left = _audit_count(detail__subject_key="", at__lt=old)
    assert item.status == "running", "the kill came after the purge had finished"
    assert 0 < expired_left < 40_000
    # Nothing held or current was touched by the half-done run.
    assert _audit_count(detail__subject_key=held_key) == 500
    assert _audit_count(at__gte=timezone.now() - timedelta(days=2)) == 500

    # The dead worker's lease runs out; the next run takes over and finishes the job.
    later = timezone.now() + timedelta(seconds=settings.RETENTION_LEASE_SECONDS + 1)
    run = enforcement.retention_enforce(now=later, policy_ids=[policy.pk]).run
    assert run.status == PurgeRun.Status.COMPLETE, run.error
    assert run.items.get().removed == expired_left
    assert PurgeRun.objects.get(pk=item.run_id).status == PurgeRun.Status.ABANDONED
    assert _audit_count(detail__subject_key="", at__lt=old) == 0
    assert _audit_count(detail__subject_key=held_key) == 500
    assert _audit_count(at__gte=timezone.now() - timedelta(days=2)) == 500


def test_consent_writes_keep_succeeding_during_a_purge():
    factories.seed_purposes()
    long_ago = timezone.now() - timedelta(days=7 * 365)
    for i in range(120):
        services.consent_record(
            subject_id=f"old-{i}",
            decisions=[services.DecisionInput("analytics", False)],
            actor=STAFF,
            now=long_ago,
        )
    _seed_audit(20_000, days_ago=7 * 365)
    ledger = RetentionPolicy.objects.get(name="default: consent.ConsentEvent")
    audit = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    RetentionPolicy.objects.filter(pk=ledger.pk).update(batch_size=5)
    RetentionPolicy.objects.filter(pk=audit.pk).update(batch_size=200)

    errors: list[BaseException] = []
    written: list[str] = []
    purge_done = threading.Event()
    runs: list[PurgeRun] = []

    def purge() -> None:
        try:
            runs.append(enforcement.retention_enforce(policy_ids=[ledger.pk, audit.pk]).run)
        except BaseException as exc:
            errors.append(exc)
        finally:
            purge_done.set()
            connection.close()

    def write(n: int) -> None:
        try:
            i = 0
            # Writers go on until the purge is over, then a few more; some write to
            # subjects whose old history the purge is removing at that moment.
            while not purge_done.is_set() or i < 5:
                subject_id = f"old-{(n * 37 + i) % 120}" if i % 2 else f"new-{n}-{i}"
                services.consent_record(
                    subject_id=subject_id,
                    decisions=[services.DecisionInput("analytics", True)],
                    actor=STAFF,
                )
                written.append(subject_id)
                i += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=purge)] + [
        threading.Thread(target=write, args=(n,)) for n in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert runs and runs[0].status == PurgeRun.Status.COMPLETE, runs[0].error
    assert runs[0].removed > 0 and len(written) >= 15
    # Every write is in the ledger, and every chain (tombstoned or not) verifies.
    grants = ConsentEvent.objects.filter(action="granted").count()
    assert grants == len(written)
    assert all(chain_verifies(s) for s in Subject.objects.all())
