"""Erasure and access requests: the API, the tasks, lineage announcement, holds, sweeper."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from consent import identity, services
from consent.models import (
    ConsentContext,
    ConsentEvent,
    ConsentState,
    Decision,
    DecisionLineage,
    Subject,
    SubjectTombstone,
)
from governance import crypto
from governance.actors import Actor
from governance.models import AuditEvent, OutboxEvent
from retention import selectors
from retention.models import AccessRequest, ErasureRequest, RequestStatus, RetentionPolicy
from retention.services import holds, rights
from tests import factories
from tests.conftest import assert_error
from tests.retention.conftest import chain_verifies, ml_rows, policy

pytestmark = pytest.mark.django_db(databases=["default", "features"])

ERASURE = "/api/v1/erasure-requests"
ACCESS = "/api/v1/access-requests"
STAFF = Actor.system("test")


def key(identifier: str) -> str:
    return identity.subject_key(identifier)


@pytest.fixture
def known(purposes, ml_features):
    """A subject known everywhere: consents, a decision's lineage, audit, outbox, features."""
    factories.record("alice", analytics=True, ml_training=True)
    factories.record("bob", analytics=True)
    alice = Subject.objects.get(key=key("alice"))
    bob = Subject.objects.get(key=key("bob"))
    decision = Decision.objects.create(
        created_at=timezone.now(),
        actor_type="system",
        purpose=purposes["ml_training"],
        as_of=timezone.now(),
        lineage=True,
    )
    DecisionLineage.objects.create(decision=decision, subject=alice)
    DecisionLineage.objects.create(decision=decision, subject=bob)
    ml_features(key("alice"), timezone.now(), n=3)
    ml_features(key("bob"), timezone.now(), n=2)
    return {"alice": alice, "bob": bob, "decision": decision}


def test_erasure_request_answers_202_the_same_for_known_and_unknown_subjects(api, known):
    answers = [api.post(ERASURE, {"subject_id": s}) for s in ("alice", "never-seen")]
    assert [a.status_code for a in answers] == [202, 202]
    bodies = [a.json() for a in answers]
    assert [set(b) for b in bodies] == [{"id", "status", "created_at", "due_at"}] * 2
    assert [b["status"] for b in bodies] == ["pending", "pending"]
    request = ErasureRequest.objects.get(pk=bodies[0]["id"])
    assert (request.due_at - request.created_at).days in (28, 29, 30, 31)
    # Nothing in plaintext at rest.
    assert request.identifier_encrypted is not None
    assert b"alice" not in bytes(request.identifier_encrypted)


def test_erasure_request_bad_input_and_scope(api, make_api, purposes):
    assert_error(api.post(ERASURE, {"subject_id": ""}), 400, "invalid_subject_id")
    assert_error(api.post(ERASURE, {}), 400, "invalid_request")
    assert_error(api.post(ERASURE, ["x"]), 400, "invalid_request")
    assert_error(make_api("admin").post(ERASURE, {"subject_id": "x"}), 403, "permission_denied")
    assert not ErasureRequest.objects.exists()


def test_erasure_removes_the_subject_everywhere_and_announces_the_decisions(api, known):
    decision = known["decision"]
    response = api.post(ERASURE, {"subject_id": "alice"})
    request_id = response.json()["id"]
    done = rights.erasure_execute(request_id=request_id)
    assert done.status == RequestStatus.COMPLETE

    # Lineage first: the decision records it lost a subject, and subscribers learn which.
    decision.refresh_from_db()
    assert decision.erased_since == 1
    assert list(DecisionLineage.objects.values_list("subject_id", flat=True)) == [known["bob"].pk]
    announced = OutboxEvent.objects.get(event_type="subject.erased")
    assert announced.payload["decisions"] == [str(decision.pk)]
    assert announced.subject_key == key("alice")
    assert announced.subject_identifier_encrypted is not None
    identifier = crypto.decrypt(
        bytes(announced.subject_identifier_encrypted), aad=key("alice").encode()
    )
    assert identifier == b"alice"

    # Every store: ledger, proof context, states, features, audit, pending outbox rows.
    alice = Subject.objects.get(key=key("alice"))
    assert alice.identifier_encrypted is None and alice.erased_at is not None
    assert not ConsentEvent.objects.filter(subject=alice).exists()
    assert not ConsentState.objects.filter(subject=alice).exists()
    assert ConsentContext.objects.count() == 1  # bob's
    assert ml_rows(key("alice")) == 0 and ml_rows(key("bob")) == 2
    # Only the record of the erasure itself keeps the keyed hash, as the tombstone does.
    assert set(
        AuditEvent.objects.filter(detail__subject_key=key("alice")).values_list("action", flat=True)
    ) == {"rights.erasure_request", "rights.erasure_complete"}
    assert AuditEvent.objects.filter(detail__subject_key=key("bob")).exists()
    assert set(
        OutboxEvent.objects.filter(subject_key=key("alice")).values_list("event_type", flat=True)
    ) == {"subject.erased"}
    tomb = SubjectTombstone.objects.get(subject_key=key("alice"))
    assert tomb.reason == SubjectTombstone.Reason.ERASURE
    assert tomb.removed["external:features.ml_features"] == 3

    body = api.get(f"{ERASURE}/{request_id}").json()
    assert body["status"] == "complete"
    assert all(t == {"done": True} for t in body["targets"].values())
    # Counts and decision ids are kept for staff (the admin), not answered by the API.
    done = ErasureRequest.objects.get(pk=request_id)
    assert done.progress["announced"] is True
    assert done.decision_ids == [str(decision.pk)]
    targets = done.progress["targets"]
    assert targets["external:features.ml_features"] == {
        "status": "done",
        "removed": 3,
        "files_removed": 0,
    }
    assert targets["consent.ConsentEvent"]["removed"] == 2
    assert targets["consent.DecisionLineage"]["removed"] == 1
    assert done.identifier_encrypted is None

    # A new grant afterwards starts a new history, on top of the tombstone.
    factories.record("alice", analytics=True)
    assert ConsentEvent.objects.filter(subject=alice).count() == 1
    assert chain_verifies(alice)


def test_erasure_of_an_unknown_subject_leaves_a_tombstone_all_the_same(api, purposes):
    request_id = api.post(ERASURE, {"subject_id": "nobody"}).json()["id"]
    rights.erasure_execute(request_id=request_id)
    tomb = SubjectTombstone.objects.get(subject_key=key("nobody"))
    assert tomb.reason == SubjectTombstone.Reason.ERASURE
    assert not Subject.objects.filter(key=key("nobody")).exists()
    assert api.get(f"{ERASURE}/{request_id}").json()["status"] == "complete"


def _without_ids_and_times(body: dict) -> dict:
    return {
        k: v for k, v in body.items() if k not in {"id", "created_at", "due_at", "completed_at"}
    }


@pytest.mark.parametrize("ledger_hold", [False, True], ids=["no-hold", "ledger-policy-hold"])
def test_erasure_status_is_the_same_for_a_known_and_an_unknown_subject(api, known, ledger_hold):
    if ledger_hold:
        ledger = RetentionPolicy.objects.filter(target="consent.ConsentEvent").first()
        holds.hold_place(
            reason="litigation",
            actor=STAFF,
            policy=ledger or policy("consent.ConsentEvent", days=3650),
        )
    ids = [api.post(ERASURE, {"subject_id": s}).json()["id"] for s in ("alice", "never-seen")]
    for step in ("pending", "complete"):
        bodies = [api.get(f"{ERASURE}/{request_id}").json() for request_id in ids]
        assert bodies[0]["status"] == step
        assert set(bodies[0]) == {
            "id",
            "status",
            "created_at",
            "due_at",
            "completed_at",
            "overdue",
            "targets",
        }
        assert all(set(state) == {"done"} for state in bodies[0]["targets"].values())
        assert _without_ids_and_times(bodies[0]) == _without_ids_and_times(bodies[1])
        if step == "pending":
            for request_id in ids:
                rights.erasure_execute(request_id=request_id)
    # Staff still see what was removed, in the admin: the counts are kept on the request.
    alice, stranger = (ErasureRequest.objects.get(pk=request_id) for request_id in ids)
    assert alice.progress["targets"]["external:features.ml_features"]["removed"] == 3
    assert stranger.progress["targets"]["external:features.ml_features"]["removed"] == 0


def test_erasure_runs_once_even_when_its_task_runs_twice(api, known):
    request_id = api.post(ERASURE, {"subject_id": "alice"}).json()["id"]
    rights.erasure_execute(request_id=request_id)
    rights.erasure_execute(request_id=request_id)
    assert SubjectTombstone.objects.filter(subject_key=key("alice")).count() == 1
    assert OutboxEvent.objects.filter(event_type="subject.erased").count() == 1


def test_held_subject_is_not_erased(api, known):
    holds.hold_place(reason="litigation", actor=STAFF, subject_id="alice")
    request_id = api.post(ERASURE, {"subject_id": "alice"}).json()["id"]
    done = rights.erasure_execute(request_id=request_id)
    assert done.status == RequestStatus.HELD
    assert ConsentEvent.objects.filter(subject=known["alice"]).count() == 2
    assert ml_rows(key("alice")) == 3
    body = api.get(f"{ERASURE}/{request_id}").json()
    assert body["status"] == "held"
    assert body["targets"]["external:features.ml_features"] == {"done": False}
    progress = ErasureRequest.objects.get(pk=request_id).progress
    assert progress["targets"]["external:features.ml_features"]["status"] == "held"


def test_policy_hold_keeps_that_targets_rows_and_the_rest_is_erased(api, known):
    features = RetentionPolicy.objects.get(target="external:features.ml_features")
    holds.hold_place(reason="model audit", actor=STAFF, policy=features)
    request_id = api.post(ERASURE, {"subject_id": "alice"}).json()["id"]
    rights.erasure_execute(request_id=request_id)
    assert ml_rows(key("alice")) == 3
    assert not ConsentEvent.objects.filter(subject=known["alice"]).exists()
    targets = api.get(f"{ERASURE}/{request_id}").json()["targets"]
    assert targets["external:features.ml_features"] == {"done": False}
    assert targets["governance.AuditEvent"] == {"done": True}
    progress = ErasureRequest.objects.get(pk=request_id).progress
    assert progress["targets"]["external:features.ml_features"]["status"] == "held"


def test_unknown_erasure_request_is_404(api):
    assert_error(api.get(f"{ERASURE}/00000000-0000-0000-0000-000000000000"), 404, "not_found")
    assert_error(api.get(f"{ERASURE}/nope"), 404, "not_found")


def test_sweeper_requeues_requests_whose_worker_died(
    api, known, django_capture_on_commit_callbacks
):
    request_id = api.post(ERASURE, {"subject_id": "alice"}).json()["id"]
    now = timezone.now()
    # A worker claimed it, then died: its heartbeat stops.
    ErasureRequest.objects.filter(pk=request_id).update(
        status=RequestStatus.RUNNING, heartbeat_at=now
    )
    assert rights.rights_requests_sweep(now=now + timedelta(seconds=10))["erasure"] == []
    assert rights.erasure_execute(request_id=request_id, now=now).status == "running"
    later = now + timedelta(minutes=6)
    with django_capture_on_commit_callbacks() as queued:
        swept = rights.rights_requests_sweep(now=later)
    assert swept["erasure"] == [request_id] and len(queued) == 1
    assert rights.erasure_execute(request_id=request_id, now=later).status == "complete"


def test_replay_erasures_erases_again_what_a_restore_brought_back(api, known):
    before = timezone.now() - timedelta(days=1)
    request_id = api.post(ERASURE, {"subject_id": "alice"}).json()["id"]
    rights.erasure_execute(request_id=request_id)
    # A backup restore brings back the subject as it was before the erasure.
    Subject.objects.filter(key=key("alice")).update(erased_at=None)
    services.consent_record(
        subject_id="alice",
        decisions=[services.DecisionInput("analytics", True)],
        actor=STAFF,
        now=before,
    )
    call_command("replay_erasures")
    alice = Subject.objects.get(key=key("alice"))
    assert alice.erased_at is not None and alice.identifier_encrypted is None
    assert not ConsentEvent.objects.filter(subject=alice).exists()
    # Applying it again changes nothing more.
    assert rights.erasures_replay() == []


def test_access_request_exports_everything_held_about_the_subject(api, known):
    response = api.post(ACCESS, {"subject_id": "alice"})
    assert response.status_code == 202
    request_id = response.json()["id"]
    assert api.get(f"{ACCESS}/{request_id}").json()["export"] is None
    rights.access_execute(request_id=request_id)
    body = api.get(f"{ACCESS}/{request_id}").json()
    assert body["status"] == "complete"
    export = body["export"]
    assert export["subject"]["identifier"] == "alice"
    assert {e["purpose"] for e in export["consent_history"]} == {"analytics", "ml_training"}
    assert {s["purpose"] for s in export["consent_states"]} == {"analytics", "ml_training"}
    targets = export["targets"]
    assert len(targets["external:features.ml_features"]) == 3
    assert len(targets["consent.ConsentContext"]) == 1
    assert targets["consent.DecisionLineage"] == [{"decision_id": str(known["decision"].pk)}]
    assert targets["governance.AuditEvent"]
    # Stored encrypted: the identifier is not in the row in plaintext.
    stored = AccessRequest.objects.get(pk=request_id)
    assert stored.export_encrypted is not None
    assert b"alice" not in bytes(stored.export_encrypted)
    assert json.dumps(export)  # plain JSON


def test_access_request_for_an_unknown_subject_exports_nothing(api, purposes):
    request_id = api.post(ACCESS, {"subject_id": "stranger"}).json()["id"]
    rights.access_execute(request_id=request_id)
    export = api.get(f"{ACCESS}/{request_id}").json()["export"]
    assert export["subject"] is None and export["consent_history"] == []


def test_overdue_rights_requests_are_flagged_in_the_admin(api, purposes, staff_client):
    request_id = api.post(ERASURE, {"subject_id": "late"}).json()["id"]
    ErasureRequest.objects.filter(pk=request_id).update(due_at=timezone.now() - timedelta(days=1))
    assert selectors.requests_overdue()["erasure"] == 1
    user = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw-for-tests-1")
    client = staff_client(user)
    page = client.get("/admin/retention/erasurerequest/?overdue=yes")
    assert page.status_code == 200
    assert request_id in page.content.decode()
    assert 'alt="True"' in page.content.decode()


def test_a_request_held_back_is_erased_when_queued_again_after_the_release(api, known):
    hold = holds.hold_place(reason="litigation", actor=STAFF, subject_id="alice")
    request_id = api.post(ERASURE, {"subject_id": "alice"}).json()["id"]
    held = rights.erasure_execute(request_id=request_id)
    assert held.status == RequestStatus.HELD
    holds.hold_release(hold=hold, actor=STAFF)
    rights.rights_request_requeue(request=held, actor=STAFF)
    done = rights.erasure_execute(request_id=request_id)
    assert done.status == RequestStatus.COMPLETE
    assert ml_rows(key("alice")) == 0
    assert not ConsentEvent.objects.filter(subject=known["alice"]).exists()
