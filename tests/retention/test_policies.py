"""Policies: the registry, seeded defaults, validation (4xx, nothing saved), the list API."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from retention import selectors
from retention.models import RetentionPolicy
from retention.registry import targets
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db(databases=["default", "features"])

POLICIES = "/api/v1/retention/policies"


def test_every_registered_target_has_a_seeded_default_policy():
    seeded = set(RetentionPolicy.objects.values_list("target", flat=True))
    # Lineage goes with its decision, by the decision's policy (issue 11, finding 18).
    assert {n for n, t in targets().items() if t.purged_with is None} <= seeded
    assert {
        "consent.ConsentEvent",
        "consent.ConsentContext",
        "consent.Decision",
        "consent.DecisionLineage",
        "governance.AuditEvent",
        "governance.IdempotencyRecord",
        "governance.OutboxEvent",
        "retention.PurgeRun",
        "retention.AccessRequest",
        "external:features.ml_features",
    } <= set(targets())


def test_enforcement_is_scheduled_hourly_by_beat():
    task = PeriodicTask.objects.get(task="retention.enforce")
    assert task.enabled and task.interval.every == 1 and task.interval.period == "hours"
    scheduled = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {
        "retention.expire_consents",
        "retention.propagate_withdrawals",
        "retention.sweep_rights_requests",
    } <= scheduled


def test_every_scheduled_task_is_registered_with_the_worker():
    # Expiry's task lives in consent/tasks.py under retention's name; autodiscovery finds it.
    from governance.celery import app

    app.loader.import_default_modules()
    scheduled = set(PeriodicTask.objects.values_list("task", flat=True))
    assert scheduled - {"celery.backend_cleanup"} <= set(app.tasks)


def test_policies_list_shows_every_policy(api):
    response = api.get(POLICIES)
    assert response.status_code == 200
    rows = {p["target"]: p for p in response.json()["policies"]}
    assert rows["consent.ConsentEvent"]["keep_for_days"] == 2192
    assert rows["external:features.ml_features"]["purpose"] == "ml_training"
    assert rows["governance.OutboxEvent"]["condition"] == {"dispatched_at__isnull": False}


def test_policy_create_validates_and_saves(api):
    response = api.post(
        POLICIES,
        {
            "name": "audit of consents",
            "target": "governance.AuditEvent",
            "keep_for": "P2500D",
            "condition": {"action__startswith": "consent."},
            "batch_size": 500,
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["keep_for_days"] == 2500
    assert RetentionPolicy.objects.filter(name="audit of consents").exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"target": "consent.Nope", "keep_for": "P30D"}, "unknown_target"),
        ({"target": "governance.AuditEvent", "keep_for": "thirty days"}, "invalid_duration"),
        ({"target": "governance.AuditEvent", "keep_for": "-P30D"}, "invalid_duration"),
        ({"target": "governance.AuditEvent", "keep_for": "P0D"}, "invalid_duration"),
        (
            {"target": "governance.AuditEvent", "keep_for": "P2200D", "condition": {"nope": 1}},
            "invalid_condition",
        ),
        (
            {
                "target": "governance.AuditEvent",
                "keep_for": "P2200D",
                "condition": {"at__bogus": 1},
            },
            "invalid_condition",
        ),
        (
            {
                "target": "consent.Decision",
                "keep_for": "P30D",
                "condition": {"data_use__key": "x"},
            },
            "invalid_condition",
        ),
        (
            {"target": "consent.Decision", "keep_for": "P1D", "action": "anonymize"},
            "invalid_policy",
        ),
        (
            {"target": "governance.AuditEvent", "keep_for": "P2200D", "batch_size": 0},
            "invalid_policy",
        ),
        (
            {"target": "consent.Decision", "keep_for": "P30D", "purpose": "analytics"},
            "invalid_policy",
        ),
    ],
)
def test_bad_policies_are_4xx_and_save_nothing(api, body, code):
    before = RetentionPolicy.objects.count()
    response = api.post(POLICIES, {"name": "bad", **body})
    assert_error(response, 400, code)
    assert RetentionPolicy.objects.count() == before


def test_duplicate_policy_name_is_409(api):
    body = {"name": "twice", "target": "governance.IdempotencyRecord", "keep_for": "P30D"}
    assert api.post(POLICIES, body).status_code == 201
    assert_error(api.post(POLICIES, body), 409, "duplicate_policy")


def test_retention_for_purpose_names_tied_policies_and_the_ledger(purposes):
    rows = selectors.retention_for_purpose(purposes["ml_training"])
    by_target = {r["target"]: r for r in rows}
    assert by_target["external:features.ml_features"]["on_withdrawal"] == "removed"
    assert by_target["consent.ConsentEvent"]["keep_for_days"] == 2192
