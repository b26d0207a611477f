"""Enforcement: each policy kind with injected time, holds, dry runs, the lease, idempotence."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from consent import identity, services
from consent.models import (
    Action,
    ConsentContext,
    ConsentEvent,
    Decision,
    DecisionLineage,
    Subject,
    SubjectTombstone,
)
from governance.actors import Actor
from governance.models import AuditEvent, IdempotencyRecord, OutboxEvent
from retention.models import AccessRequest, Lease, PurgeRun, RetentionPolicy
from retention.services import enforcement, holds, lease
from retention.tasks import retention_enforce_task
from tests import factories
from tests.conftest import assert_error
from tests.retention.conftest import chain_verifies, ml_rows, policy

pytestmark = [
    pytest.mark.django_db(databases=["default", "features"]),
    # These tests are about the purge mechanics, with short periods; the accountability
    # minimum has its own tests (test_accountability.py).
    pytest.mark.usefixtures("no_accountability_minimum"),
]

STAFF = Actor.system("test")


def audit(at, subject_key: str = "") -> AuditEvent:
    return AuditEvent.objects.create(
        at=at, actor_type="system", action="test", detail={"subject_key": subject_key}
    )


def key(identifier: str) -> str:
    return identity.subject_key(identifier)


def enforce(p: RetentionPolicy, now, **kw):
    run = enforcement.retention_enforce(now=now, policy_ids=[p.pk], **kw).run
    return run, run.items.get()


def test_rows_older_than_the_period_are_deleted_and_newer_ones_kept(now):
    p = policy("governance.AuditEvent", days=30)
    old = [audit(now - timedelta(days=31 + i)) for i in range(3)]
    new = [audit(now - timedelta(days=29)), audit(now)]
    run, item = enforce(p, now)
    assert run.status == PurgeRun.Status.COMPLETE
    assert (item.examined, item.removed, item.held) == (3, 3, 0)
    assert not AuditEvent.objects.filter(pk__in=[a.pk for a in old]).exists()
    assert AuditEvent.objects.filter(pk__in=[a.pk for a in new]).count() == 2


def test_small_batches_purge_everything_in_several_chunks(now):
    p = policy("governance.IdempotencyRecord", days=1, batch_size=2)
    client, _ = factories.api_client(scopes=[])
    for i in range(7):
        IdempotencyRecord.objects.create(
            client=client, key=f"k{i}", request_hash="h", status_code=201, response_body={}
        )
    IdempotencyRecord.objects.update(created_at=now - timedelta(days=2))
    _, item = enforce(p, now)
    assert item.removed == 7 and item.chunks >= 1
    assert not IdempotencyRecord.objects.exists()


def test_condition_limits_what_goes(now):
    p = policy("governance.OutboxEvent", days=30, condition={"dispatched_at__isnull": False})
    old = now - timedelta(days=40)
    sent = OutboxEvent.objects.create(event_type="x", created_at=old, dispatched_at=old)
    waiting = OutboxEvent.objects.create(event_type="x", created_at=old)
    _, item = enforce(p, now)
    assert item.removed == 1
    assert not OutboxEvent.objects.filter(pk=sent.pk).exists()
    assert OutboxEvent.objects.filter(pk=waiting.pk).exists()


def test_anonymize_policy_clears_exports_and_keeps_the_requests(now):
    p = policy("retention.AccessRequest", days=30, action="anonymize")
    old = AccessRequest.objects.create(
        subject_key="a" * 64, created_at=now - timedelta(days=31), due_at=now, export_encrypted=b"x"
    )
    fresh = AccessRequest.objects.create(
        subject_key="b" * 64, created_at=now, due_at=now, export_encrypted=b"y"
    )
    _, item = enforce(p, now)
    assert item.removed == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.export_encrypted is None and fresh.export_encrypted is not None
    _, again = enforce(p, now)
    assert again.examined == 0 and again.removed == 0


def test_decisions_go_with_their_lineage(now, purposes):
    p = policy("consent.Decision", days=365)
    factories.record("lineage-user", analytics=True)
    subject = Subject.objects.get()

    def decision(days_ago: int) -> Decision:
        d = Decision.objects.create(
            created_at=now - timedelta(days=days_ago),
            actor_type="system",
            purpose=purposes["analytics"],
            as_of=now,
            lineage=True,
        )
        DecisionLineage.objects.create(decision=d, subject=subject)
        return d

    old, new = decision(400), decision(10)
    _, item = enforce(p, now)
    assert item.removed == 1
    assert list(Decision.objects.values_list("pk", flat=True)) == [new.pk]
    assert list(DecisionLineage.objects.values_list("decision_id", flat=True)) == [new.pk]
    assert old.pk not in set(DecisionLineage.objects.values_list("decision_id", flat=True))


def test_proof_context_goes_after_its_period_and_the_chain_still_verifies(now, purposes):
    p = policy("consent.ConsentContext", days=365)
    services.consent_record(
        subject_id="ctx-old",
        decisions=[services.DecisionInput("analytics", True)],
        actor=STAFF,
        now=now - timedelta(days=400),
    )
    services.consent_record(
        subject_id="ctx-new", decisions=[services.DecisionInput("analytics", True)], actor=STAFF
    )
    _, item = enforce(p, now)
    assert item.removed == 1 and ConsentContext.objects.count() == 1
    assert ConsentEvent.objects.count() == 2  # the events keep the context's digest
    assert all(chain_verifies(s) for s in Subject.objects.all())


def _record(subject_id: str, now, days_ago: int, **granted: bool) -> None:
    services.consent_record(
        subject_id=subject_id,
        decisions=[services.DecisionInput(k, v) for k, v in granted.items()],
        actor=STAFF,
        now=now - timedelta(days=days_ago),
    )


def test_ledger_purges_whole_histories_only_when_nothing_stands(now, purposes):
    p = policy("consent.ConsentEvent", days=3 * 365)
    long_ago = 4 * 365
    _record("withdrawn-long-ago", now, long_ago + 10, analytics=True)
    _record("withdrawn-long-ago", now, long_ago, analytics=False)
    _record("expired-long-ago", now, long_ago, analytics=True)  # ttl 365 days: expired
    _record("refused-long-ago", now, long_ago, ml_training=False)
    _record("recent-withdrawal", now, long_ago, analytics=True)
    _record("recent-withdrawal", now, 10, analytics=False)
    _record("still-granted", now, 10, analytics=True)
    _record("no-expiry-grant", now, long_ago, security=True)  # no ttl: still stands
    heads = {s.key: (s.chain_head, s.last_seq) for s in Subject.objects.all()}

    _, item = enforce(p, now)

    gone = {key(x) for x in ("withdrawn-long-ago", "expired-long-ago", "refused-long-ago")}
    assert item.examined == 3 and item.removed == 4  # events: 2 + 1 + 1
    remaining = set(ConsentEvent.objects.values_list("subject__key", flat=True))
    assert remaining == {key(x) for x in ("recent-withdrawal", "still-granted", "no-expiry-grant")}
    tombstones = {t.subject_key: t for t in SubjectTombstone.objects.all()}
    assert set(tombstones) == gone
    for k in gone:
        # The tombstone's final hash is the removed chain's head: the checkpoint the check accepts.
        assert (tombstones[k].final_chain_hash, tombstones[k].last_seq) == heads[k]
        assert tombstones[k].reason == SubjectTombstone.Reason.EXPIRED_HISTORY
    # A new grant afterwards starts a new history on top of the tombstone, and it verifies.
    _record("withdrawn-long-ago", now, 0, analytics=True)
    again = Subject.objects.get(key=key("withdrawn-long-ago"))
    first = ConsentEvent.objects.get(subject=again)
    assert first.prev_hash == tombstones[again.key].final_chain_hash
    assert all(chain_verifies(s) for s in Subject.objects.all())


def test_external_table_in_a_second_database_is_purged_except_held_subjects(
    now, ml_features, purposes
):
    p = RetentionPolicy.objects.get(target="external:features.ml_features")
    ml_features("a" * 64, now - timedelta(days=200), n=3)
    ml_features("b" * 64, now - timedelta(days=200), n=2)
    ml_features("a" * 64, now - timedelta(days=10), n=1)
    holds.hold_place(reason="litigation", actor=STAFF, subject_id="held-person")
    ml_features(key("held-person"), now - timedelta(days=200), n=4)
    _, item = enforce(p, now)
    assert (item.examined, item.removed, item.held) == (9, 5, 4)
    assert ml_rows() == 5 and ml_rows(key("held-person")) == 4 and ml_rows("a" * 64) == 1


def test_subject_hold_keeps_that_subjects_rows(now):
    p = policy("governance.AuditEvent", days=30)
    holds.hold_place(reason="litigation", actor=STAFF, subject_id="held")
    kept = audit(now - timedelta(days=90), key("held"))
    gone = audit(now - timedelta(days=90), key("other"))
    # A row naming no subject at all is not held by a subject's hold.
    nobody = AuditEvent.objects.create(
        at=now - timedelta(days=90), actor_type="system", action="test", detail={}
    )
    _, item = enforce(p, now)
    assert (item.examined, item.removed, item.held) == (3, 2, 1)
    assert AuditEvent.objects.filter(pk=kept.pk).exists()
    assert not AuditEvent.objects.filter(pk__in=[gone.pk, nobody.pk]).exists()


def test_subject_hold_keeps_a_ledger_history(now, purposes):
    p = policy("consent.ConsentEvent", days=365)
    _record("held", now, 800, analytics=False)
    _record("free", now, 800, analytics=False)
    holds.hold_place(reason="audit", actor=STAFF, subject_id="held")
    _, item = enforce(p, now)
    assert (item.examined, item.removed, item.held) == (2, 1, 1)
    assert set(ConsentEvent.objects.values_list("subject__key", flat=True)) == {key("held")}


def test_policy_hold_keeps_every_row_until_released(now):
    p = policy("governance.AuditEvent", days=30)
    hold = holds.hold_place(reason="regulator inquiry", actor=STAFF, policy=p)
    rows = [audit(now - timedelta(days=60)) for _ in range(3)]
    _, item = enforce(p, now)
    assert (item.examined, item.removed, item.held) == (3, 0, 3)
    assert AuditEvent.objects.filter(pk__in=[r.pk for r in rows]).count() == 3
    holds.hold_release(hold=hold, actor=STAFF)
    _, item = enforce(p, now)
    assert item.removed == 3


def test_hold_needs_a_subject_or_a_policy():
    from governance.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        holds.hold_place(reason="x", actor=STAFF)


def test_dry_run_reports_what_would_go_and_deletes_nothing(now):
    p = policy("governance.AuditEvent", days=30)
    holds.hold_place(reason="x", actor=STAFF, subject_id="held")
    audit(now - timedelta(days=60))
    audit(now - timedelta(days=60), key("held"))
    audit(now)
    run, item = enforce(p, now, dry_run=True)
    assert run.dry_run and (item.examined, item.removed, item.held) == (2, 1, 1)
    assert AuditEvent.objects.filter(action="test").count() == 3
    assert not Lease.objects.filter(holder=str(run.pk)).exists()


def test_dry_run_from_the_api_needs_admin_and_deletes_nothing(make_api, purposes):
    AuditEvent.objects.all().delete()
    audit(timezone.now() - timedelta(days=7 * 365))
    api = make_api("admin")
    response = api.post("/api/v1/retention/runs", {"dry_run": True})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["dry_run"] is True and body["status"] == "complete"
    audit_item = next(i for i in body["policies"] if i["target"] == "governance.AuditEvent")
    assert audit_item["removed"] == 1
    assert AuditEvent.objects.filter(action="test").count() == 1
    assert api.get(f"/api/v1/retention/runs/{body['id']}").json()["id"] == body["id"]
    assert_error(
        make_api("rights").post("/api/v1/retention/runs", {"dry_run": True}),
        403,
        "permission_denied",
    )
    assert_error(api.post("/api/v1/retention/runs", {"dry_run": "maybe"}), 400, "invalid_request")


def test_real_run_from_the_api_is_queued_then_carried_out_by_the_task(make_api, purposes):
    audit(timezone.now() - timedelta(days=7 * 365))
    api = make_api("admin")
    response = api.post("/api/v1/retention/runs", {"dry_run": False})
    assert response.status_code == 202
    run_id = response.json()["id"]
    assert api.get(f"/api/v1/retention/runs/{run_id}").json()["status"] == "queued"
    retention_enforce_task.apply(kwargs={"run_id": run_id})
    body = api.get(f"/api/v1/retention/runs/{run_id}").json()
    assert body["status"] == "complete" and body["dry_run"] is False
    assert not AuditEvent.objects.filter(action="test").exists()


def test_unknown_run_is_404(make_api):
    api = make_api("admin")
    assert_error(api.get(f"/api/v1/retention/runs/{uuid.uuid4()}"), 404, "not_found")
    assert_error(api.get("/api/v1/retention/runs/not-a-uuid"), 404, "not_found")


def test_dry_run_from_the_command_deletes_nothing(now, capsys):
    audit(now - timedelta(days=7 * 365))
    call_command("enforce_retention", "--dry-run", "--policy", "default: governance.AuditEvent")
    out = capsys.readouterr().out
    assert "would remove" in out and "default: governance.AuditEvent" in out
    assert AuditEvent.objects.filter(action="test").count() == 1
    call_command("enforce_retention", "--policy", "default: governance.AuditEvent")
    assert AuditEvent.objects.filter(action="test").count() == 0


def test_dry_run_from_the_admin_action_deletes_nothing(now, staff_client):
    audit(now - timedelta(days=7 * 365))
    user = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw-for-tests-1")
    client = staff_client(user)
    p = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    response = client.post(
        "/admin/retention/retentionpolicy/",
        {"action": "dry_run", "_selected_action": [p.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"would go" in response.content
    assert AuditEvent.objects.filter(action="test").count() == 1
    assert PurgeRun.objects.filter(dry_run=True, trigger="admin").exists()


def test_admin_policy_form_refuses_a_condition_on_a_missing_field(staff_client):
    user = get_user_model().objects.create_superuser("dpo2", "dpo2@example.com", "pw-for-tests-1")
    client = staff_client(user)
    before = RetentionPolicy.objects.count()
    response = client.post(
        "/admin/retention/retentionpolicy/add/",
        {
            "name": "bad",
            "target": "governance.AuditEvent",
            "keep_for": "30 00:00:00",
            "action": "delete",
            "condition": '{"missing": 1}',
            "batch_size": 100,
            "enabled": "on",
        },
    )
    assert response.status_code == 200 and b"has no field" in response.content
    assert RetentionPolicy.objects.count() == before


def test_enforcing_twice_reaches_the_same_end_state(now, purposes):
    for days in (7 * 365, 8 * 365, 10):  # the default policies: past the 6-year minimum
        audit(now - timedelta(days=days))
    _record("old", now, 7 * 365, analytics=False)
    _record("new", now, 1, analytics=True)
    first = enforcement.retention_enforce(now=now).run
    state = (
        set(AuditEvent.objects.filter(action="test").values_list("pk", flat=True)),
        set(ConsentEvent.objects.values_list("pk", flat=True)),
        SubjectTombstone.objects.count(),
    )
    second = enforcement.retention_enforce(now=now).run
    assert first.status == second.status == PurgeRun.Status.COMPLETE, (first.error, second.error)
    assert first.removed > 0 and second.removed == 0
    assert state == (
        set(AuditEvent.objects.filter(action="test").values_list("pk", flat=True)),
        set(ConsentEvent.objects.values_list("pk", flat=True)),
        SubjectTombstone.objects.count(),
    )


def test_only_one_enforcement_runs_at_a_time(now):
    p = policy("governance.AuditEvent", days=30)
    audit(now - timedelta(days=60))
    assert lease.lease_acquire(
        name=lease.ENFORCE_LEASE, holder="other", now=now, ttl=timedelta(minutes=5)
    )
    skipped = enforcement.retention_enforce(now=now, policy_ids=[p.pk]).run
    assert skipped.status == PurgeRun.Status.SKIPPED and not skipped.items.exists()
    assert AuditEvent.objects.filter(action="test").count() == 1
    # Once the holder's lease has run out (it died), the next run takes over.
    later = enforcement.retention_enforce(now=now + timedelta(minutes=6), policy_ids=[p.pk]).run
    assert later.status == PurgeRun.Status.COMPLETE
    assert AuditEvent.objects.filter(action="test").count() == 0


def test_a_failing_policy_is_recorded_and_the_others_still_run(now):
    broken = policy("governance.AuditEvent", days=30)
    RetentionPolicy.objects.filter(pk=broken.pk).update(target="governance.Gone")
    fine = policy("governance.OutboxEvent", days=1)
    OutboxEvent.objects.create(event_type="x", created_at=now - timedelta(days=2))
    run = enforcement.retention_enforce(now=now, policy_ids=[broken.pk, fine.pk]).run
    assert run.status == PurgeRun.Status.FAILED and "governance.Gone" in run.error
    assert not OutboxEvent.objects.filter(event_type="x").exists()


def test_run_completion_is_announced_in_the_outbox(now):
    p = policy("governance.AuditEvent", days=30)
    run = enforcement.retention_enforce(now=now, policy_ids=[p.pk]).run
    announced = OutboxEvent.objects.get(event_type="retention.run_completed")
    assert announced.payload["run_id"] == str(run.pk)


def test_grants_are_not_expired_histories_while_they_stand(now, purposes):
    p = policy("consent.ConsentEvent", days=30)
    _record("standing", now, 60, analytics=True)  # ttl 365 days: still standing
    _, item = enforce(p, now)
    assert item.examined == 0
    assert ConsentEvent.objects.filter(action=Action.GRANTED).count() == 1


def test_a_run_out_of_time_says_more_to_do_and_the_next_run_continues(now):
    audit_policy = policy("governance.AuditEvent", days=30)
    audit(now - timedelta(days=60))
    ids = [audit_policy.pk]
    # A budget spent before the first policy: nothing done, and the answer says so.
    cut = enforcement.retention_enforce(now=now, policy_ids=ids, budget_seconds=-1)
    assert cut.more_to_do and "time budget spent" in cut.run.error
    assert AuditEvent.objects.filter(action="test").count() == 1
    done = enforcement.retention_enforce(now=now, policy_ids=ids, budget_seconds=60)
    assert not done.more_to_do and done.run.status == PurgeRun.Status.COMPLETE
    assert AuditEvent.objects.filter(action="test").count() == 0


def test_the_task_queues_its_continuation_only_when_there_is_more_to_do(now, monkeypatch):
    from retention import tasks

    queued: list[bool] = []
    monkeypatch.setattr(retention_enforce_task, "delay", lambda: queued.append(True))
    retention_enforce_task.apply()
    assert queued == []
    monkeypatch.setattr(tasks, "ENFORCE_BUDGET_SECONDS", -1)
    retention_enforce_task.apply()
    assert queued == [True]
