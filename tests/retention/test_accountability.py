"""Accountability records keep a minimum period (issue 11, finding 8) and lineage lives as
long as its decision (finding 18): validation, enforcement, erasure, seeded policies."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model

from consent import identity
from consent.models import Decision, DecisionLineage, Subject
from governance.actors import Actor
from governance.models import AuditEvent
from retention.errors import RetentionBelowMinimum
from retention.models import LegalHold, RetentionPolicy
from retention.services import enforcement, holds, policies, rights
from tests import factories
from tests.conftest import assert_error
from tests.retention.conftest import policy

pytestmark = pytest.mark.django_db(databases=["default", "features"])

POLICIES = "/api/v1/retention/policies"
STAFF = Actor.system("test")
ACCOUNTABILITY = ["governance.AuditEvent", "consent.ConsentEvent", "consent.ConsentContext"]
MINIMUM = timedelta(days=2192)


def audit(now, *, days_ago: float, **fields) -> AuditEvent:
    fields.setdefault("action", "test")
    return AuditEvent.objects.create(
        at=now - timedelta(days=days_ago), actor_type="system", **fields
    )


def _policy_and_audit_counts() -> tuple[int, int]:
    return RetentionPolicy.objects.count(), AuditEvent.objects.count()


@pytest.mark.parametrize("target", ACCOUNTABILITY)
def test_a_policy_below_the_accountability_minimum_is_refused_on_create(api, target):
    before = _policy_and_audit_counts()
    response = api.post(POLICIES, {"name": "wipe", "target": target, "keep_for": "PT1S"})
    assert_error(response, 400, "retention_below_minimum")
    assert response.json()["error"]["detail"]["minimum_days"] == 2192
    assert _policy_and_audit_counts() == before


def test_an_audit_policy_update_below_the_minimum_is_refused_and_changes_nothing(api):
    audit_policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    before = _policy_and_audit_counts()
    response = api.patch(f"{POLICIES}/{audit_policy.pk}", {"keep_for": "PT1S"})
    assert_error(response, 400, "retention_below_minimum")
    audit_policy.refresh_from_db()
    assert audit_policy.keep_for == MINIMUM
    assert _policy_and_audit_counts() == before


def test_a_policy_update_is_validated_saved_and_audited(api):
    audit_policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    response = api.patch(f"{POLICIES}/{audit_policy.pk}", {"keep_for": "P3000D"})
    assert response.status_code == 200, response.content
    assert response.json()["keep_for_days"] == 3000
    row = AuditEvent.objects.get(action="retention.policy_update")
    assert row.target_type == "retention_policy" and row.target_id == str(audit_policy.pk)
    assert row.detail["before"]["keep_for_days"] == 2192
    assert row.detail["after"]["keep_for_days"] == 3000
    assert_error(api.patch(f"{POLICIES}/999999", {"keep_for": "P1D"}), 404, "not_found")


def test_services_refuse_a_policy_below_the_minimum():
    with pytest.raises(RetentionBelowMinimum):
        policies.policy_create(
            data=policies.PolicyInput(
                name="short", target="governance.AuditEvent", keep_for="P30D"
            ),
            actor=STAFF,
        )
    existing = RetentionPolicy.objects.get(name="default: consent.ConsentEvent")
    with pytest.raises(RetentionBelowMinimum):
        policies.policy_update(
            policy=existing,
            data=policies.PolicyInput(
                name=existing.name, target=existing.target, keep_for=timedelta(days=30)
            ),
            actor=STAFF,
        )
    assert not RetentionPolicy.objects.filter(name="short").exists()


def test_the_admin_refuses_a_policy_below_the_minimum_on_add_and_change(staff_client):
    user = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw-for-tests-1")
    client = staff_client(user)
    audit_policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    form = {
        "name": "short",
        "target": "governance.AuditEvent",
        "keep_for": "0:00:01",
        "action": "delete",
        "condition": "{}",
        "batch_size": 100,
        "enabled": "on",
    }
    before = _policy_and_audit_counts()
    added = client.post("/admin/retention/retentionpolicy/add/", form)
    assert added.status_code == 200 and b"minimum" in added.content
    changed = client.post(
        f"/admin/retention/retentionpolicy/{audit_policy.pk}/change/",
        {**form, "name": audit_policy.name},
    )
    assert changed.status_code == 200 and b"minimum" in changed.content
    assert _policy_and_audit_counts() == before
    audit_policy.refresh_from_db()
    assert audit_policy.keep_for == MINIMUM


def test_the_admin_saves_policies_through_the_services(staff_client_for_policies):
    client, audit_policy = staff_client_for_policies
    response = client.post(
        f"/admin/retention/retentionpolicy/{audit_policy.pk}/change/",
        {
            "name": audit_policy.name,
            "target": "governance.AuditEvent",
            "keep_for": "2500 00:00:00",
            "action": "delete",
            "condition": "{}",
            "batch_size": 100,
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content
    audit_policy.refresh_from_db()
    assert audit_policy.keep_for == timedelta(days=2500)
    assert AuditEvent.objects.filter(
        action="retention.policy_update", target_id=str(audit_policy.pk)
    ).exists()


@pytest.fixture
def staff_client_for_policies(staff_client):
    user = get_user_model().objects.create_superuser("dpo3", "dpo3@example.com", "pw-for-tests-1")
    client = staff_client(user)
    return client, RetentionPolicy.objects.get(name="default: governance.AuditEvent")


def test_the_minimum_follows_the_setting(api, settings):
    settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS = 30
    ok = api.post(
        POLICIES, {"name": "month", "target": "governance.AuditEvent", "keep_for": "P31D"}
    )
    assert ok.status_code == 201, ok.content
    short = {"name": "week", "target": "governance.AuditEvent", "keep_for": "P7D"}
    assert_error(api.post(POLICIES, short), 400, "retention_below_minimum")


def test_other_targets_have_no_minimum(api):
    response = api.post(
        POLICIES, {"name": "quick", "target": "governance.IdempotencyRecord", "keep_for": "PT1S"}
    )
    assert response.status_code == 201, response.content


def test_accountability_records_cannot_be_tied_to_a_purpose(api, purposes):
    body = {
        "name": "on withdrawal",
        "target": "governance.AuditEvent",
        "keep_for": "P2200D",
        "purpose": "analytics",
    }
    assert_error(api.post(POLICIES, body), 400, "invalid_policy")


def test_seeded_policies_keep_accountability_records_for_the_minimum():
    for target in ACCOUNTABILITY:
        assert RetentionPolicy.objects.get(name=f"default: {target}").keep_for >= MINIMUM


def test_a_short_policy_saved_before_the_minimum_still_keeps_records_for_it(now):
    # Written around the services (as an old database would hold it).
    old_short = policy("governance.AuditEvent", days=30)
    inside = audit(now, days_ago=60)
    past = audit(now, days_ago=2200)
    run = enforcement.retention_enforce(now=now, policy_ids=[old_short.pk]).run
    assert run.status == "complete", run.error
    assert AuditEvent.objects.filter(pk=inside.pk).exists()
    assert not AuditEvent.objects.filter(pk=past.pk).exists()


def test_an_audit_purge_leaves_the_rows_about_retention_policies(now, api):
    api.post(POLICIES, {"name": "outbox", "target": "governance.OutboxEvent", "keep_for": "P9D"})
    assert AuditEvent.objects.filter(target_type="retention_policy").exists()
    about_policies = [
        audit(now, days_ago=3000, target_type="retention_policy", action="retention.policy_create"),
        audit(now, days_ago=3000, target_type="retention.retentionpolicy", action="admin.change"),
    ]
    other = audit(now, days_ago=3000, target_type="receipt")
    # Even a policy aimed at them (by its condition) leaves them.
    aimed = RetentionPolicy.objects.create(
        name="aimed",
        target="governance.AuditEvent",
        keep_for=MINIMUM,
        condition={"action__startswith": "retention."},
    )
    default = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    run = enforcement.retention_enforce(now=now, policy_ids=[aimed.pk, default.pk]).run
    assert run.status == "complete", run.error
    assert not AuditEvent.objects.filter(pk=other.pk).exists()
    assert AuditEvent.objects.filter(pk__in=[r.pk for r in about_policies]).count() == 2
    assert AuditEvent.objects.filter(target_type="retention_policy").count() >= 2


def test_erasure_removes_a_persons_audit_rows_inside_the_minimum_window(purposes, settings):
    settings.RETENTION_EXTERNAL_TABLES = []
    factories.record("erin", analytics=True)
    key = identity.subject_key("erin")
    assert AuditEvent.objects.filter(detail__subject_key=key, action="consent.record").exists()
    request = rights.erasure_request_create(subject_id="erin", actor=STAFF)
    done = rights.erasure_execute(request_id=request.pk)
    assert done.status == "complete", done.error
    left = set(AuditEvent.objects.filter(detail__subject_key=key).values_list("action", flat=True))
    assert left == {"rights.erasure_request", "rights.erasure_complete"}


# --- lineage lives as long as its decision (finding 18) ----------------------------------


def _decision(now, purposes, subject: Subject, *, days_ago: int) -> Decision:
    decision = Decision.objects.create(
        created_at=now - timedelta(days=days_ago),
        actor_type="system",
        purpose=purposes["analytics"],
        as_of=now,
        lineage=True,
    )
    DecisionLineage.objects.create(decision=decision, subject=subject)
    return decision


def test_lineage_has_no_policy_of_its_own(api):
    assert not RetentionPolicy.objects.filter(target="consent.DecisionLineage").exists()
    body = {"name": "lineage", "target": "consent.DecisionLineage", "keep_for": "P365D"}
    response = api.post(POLICIES, body)
    assert_error(response, 400, "invalid_policy")
    assert response.json()["error"]["detail"]["purged_with"] == "consent.Decision"


def test_lineage_lives_as_long_as_its_decision_under_the_seeded_policies(now, purposes):
    factories.record("lineage-user", analytics=True)
    subject = Subject.objects.get()
    year_old = _decision(now, purposes, subject, days_ago=400)
    expired = _decision(now, purposes, subject, days_ago=800)
    run = enforcement.retention_enforce(now=now).run
    assert run.status == "complete", run.error
    # "Which models used this person" still answers for every decision that exists.
    assert list(Decision.objects.values_list("pk", flat=True)) == [year_old.pk]
    assert list(DecisionLineage.objects.values_list("decision_id", flat=True)) == [year_old.pk]
    assert expired.pk not in set(DecisionLineage.objects.values_list("decision_id", flat=True))


def test_a_held_subjects_lineage_keeps_its_decision(now, purposes):
    factories.record("held-user", analytics=True)
    factories.record("free-user", analytics=True)
    held = Subject.objects.get(key=identity.subject_key("held-user"))
    free = Subject.objects.get(key=identity.subject_key("free-user"))
    holds.hold_place(reason="litigation", actor=STAFF, subject_id="held-user")
    kept = _decision(now, purposes, held, days_ago=800)
    gone = _decision(now, purposes, free, days_ago=800)
    decisions = RetentionPolicy.objects.get(name="default: consent.Decision")
    run = enforcement.retention_enforce(now=now, policy_ids=[decisions.pk]).run
    item = run.items.get()
    assert (item.removed, item.held) == (1, 1)
    assert list(Decision.objects.values_list("pk", flat=True)) == [kept.pk]
    assert DecisionLineage.objects.filter(decision=kept, subject=held).exists()
    assert not Decision.objects.filter(pk=gone.pk).exists()


def test_the_migration_drops_lineage_policies_and_raises_short_accountability_ones():
    migration = importlib.import_module(
        "retention.migrations.0003_lineage_with_decision_and_accountability_minimum"
    )
    lineage = RetentionPolicy.objects.create(
        name="lineage", target="consent.DecisionLineage", keep_for=timedelta(days=365)
    )
    held_lineage = RetentionPolicy.objects.create(
        name="held lineage", target="consent.DecisionLineage", keep_for=timedelta(days=365)
    )
    LegalHold.objects.create(policy=held_lineage, reason="inquiry", created_at=lineage.created_at)
    short = RetentionPolicy.objects.create(
        name="short audit", target="governance.AuditEvent", keep_for=timedelta(days=30)
    )
    migration.forward(apps, None)
    assert not RetentionPolicy.objects.filter(pk=lineage.pk).exists()
    held_lineage.refresh_from_db()
    short.refresh_from_db()
    assert not held_lineage.enabled
    assert short.keep_for == MINIMUM


def test_policy_update_needs_the_admin_scope(make_api, purposes):
    audit_policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    response = make_api("rights").patch(f"{POLICIES}/{audit_policy.pk}", {"keep_for": "P3000D"})
    assert_error(response, 403, "permission_denied")
    audit_policy.refresh_from_db()
    assert audit_policy.keep_for == MINIMUM
