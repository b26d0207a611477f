"""Identifier rectification (Art. 16): the API, the ledger that still verifies, the stores
that move to the new key, erasure and replays afterwards, and the old identifier that reads
as one never seen."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from consent import identity, services
from consent.ledger.purge import subject_history_purge
from consent.ledger.verify import ledger_verify
from consent.models import (
    RECTIFIED,
    ConsentEvent,
    Subject,
    SubjectKeyChange,
    SubjectTombstone,
)
from consent.rectification import subject_rectify
from governance import crypto
from governance.actors import Actor
from governance.models import AuditEvent, IdempotencyRecord, OutboxEvent
from retention.models import AccessRequest, ErasureRequest, LegalHold, RequestStatus
from retention.services import holds, rights
from retention.tasks import external_tables_rekey_task
from tests import factories
from tests.conftest import assert_error
from tests.retention.conftest import ML_FEATURES_DDL, ml_rows

pytestmark = pytest.mark.django_db(databases=["default", "features"])

STAFF = Actor.system("test")


def key(identifier: str) -> str:
    return identity.subject_key(identifier)


def rectify_path(subject_id: str) -> str:
    return f"/api/v1/subjects/{subject_id}/identifier"


def subject(identifier: str, namespace: str = "account") -> Subject:
    return Subject.objects.get(namespace=namespace, key=key(identifier))


def verified() -> bool:
    report = ledger_verify()
    assert report.breaks == []
    return report.ok


@pytest.fixture(autouse=True)
def _ml_features_table() -> None:
    """The external ML feature table (second PostgreSQL database), which every erasure
    reaches; created in the test's transaction if the retention tests have not made it."""
    with connections["features"].cursor() as cursor:
        cursor.execute(ML_FEATURES_DDL)


@pytest.fixture
def features() -> Any:
    """Inserts rows for a key into the external ML feature table."""

    def insert(subject_key: str, n: int = 1) -> None:
        with connections["features"].cursor() as cursor:
            for _ in range(n):
                cursor.execute(
                    "INSERT INTO ml_features (subject_key, created_at) VALUES (%s, %s)",
                    [subject_key, timezone.now()],
                )

    return insert


# --- the API contract ---------------------------------------------------------------------


def test_rectification_answers_with_the_new_identifier_and_its_event(api):
    factories.record("alice@old.example", analytics=True, ml_training=False)
    response = api.post(rectify_path("alice@old.example"), {"new_subject_id": "alice@new.example"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"subject_id", "event_id"}
    assert body["subject_id"] == "alice@new.example"

    alice = subject("alice@new.example")
    event = ConsentEvent.objects.get(pk=body["event_id"])
    assert (event.subject_id, event.action, event.purpose, event.seq) == (
        alice.pk,
        RECTIFIED,
        None,
        3,
    )
    assert not Subject.objects.filter(key=key("alice@old.example")).exists()
    change = SubjectKeyChange.objects.get(subject=alice)
    assert (change.old_key, change.new_key, change.from_seq) == (
        key("alice@old.example"),
        key("alice@new.example"),
        3,
    )
    # The identifier is kept encrypted, under the new key.
    assert identity.decrypt_identifier(alice.identifier_encrypted, key=alice.key) == (
        "alice@new.example"
    )
    # Audited with the API client as actor, keys only.
    audit = AuditEvent.objects.get(action="subject.rectify")
    assert audit.actor_type == "api_client"
    assert audit.detail["subject_key"] == key("alice@new.example")
    assert audit.detail["old_subject_key"] == key("alice@old.example")
    assert "alice" not in json.dumps(audit.detail)
    # Announced, with both keys, to subscribers (Art. 19).
    announced = OutboxEvent.objects.get(event_type="subject.rectified")
    assert announced.subject_key == key("alice@new.example")
    assert announced.payload["old_subject_key"] == key("alice@old.example")
    assert announced.payload["new_subject_key"] == alice.key
    assert announced.payload["event_id"] == body["event_id"]
    # Consent state is untouched: the rectified event is about no purpose.
    check = api.get("/api/v1/subjects/alice@new.example/checks/analytics").json()
    assert (check["allowed"], check["reason"]) == (True, "granted")


def test_rectification_errors_leave_everything_as_it_was(api, make_api):
    factories.record("alice", analytics=True)
    factories.record("bob", analytics=True)
    erased = rights.erasure_request_create(subject_id="carol", actor=STAFF)
    factories.record("carol", analytics=True)
    rights.erasure_execute(request_id=erased.pk)

    assert_error(api.post(rectify_path("stranger"), {"new_subject_id": "x"}), 404, "not_found")
    assert_error(api.post(rectify_path("carol"), {"new_subject_id": "x"}), 404, "not_found")
    assert_error(
        api.post(rectify_path("alice"), {"new_subject_id": "bob"}), 409, "identifier_in_use"
    )
    assert_error(
        api.post(rectify_path("alice"), {"new_subject_id": "alice"}), 409, "identifier_in_use"
    )
    assert_error(api.post(rectify_path("alice"), {"new_subject_id": ""}), 400, "invalid_subject_id")
    assert_error(
        api.post(rectify_path("alice"), {"new_subject_id": "a\x00b"}), 400, "invalid_subject_id"
    )
    assert_error(api.post(rectify_path("alice"), {}), 400, "invalid_request")
    assert_error(
        api.post(rectify_path("alice") + "?namespace=tenant", {"new_subject_id": "x"}),
        400,
        "invalid_request",
    )
    for scopes in (["consent:write", "consent:read"], ["admin"]):
        assert_error(
            make_api(*scopes).post(rectify_path("alice"), {"new_subject_id": "x"}),
            403,
            "permission_denied",
        )
    assert not SubjectKeyChange.objects.exists()
    assert not ConsentEvent.objects.filter(action=RECTIFIED).exists()
    assert subject("alice").last_seq == 1
    assert not AuditEvent.objects.filter(action="subject.rectify").exists()


def test_rectification_takes_the_namespace_as_other_subject_endpoints(api):
    services.consent_record(
        subject_id="dev-1",
        namespace=Subject.Namespace.DEVICE,
        decisions=[services.DecisionInput("analytics", True)],
        actor=STAFF,
    )
    assert_error(api.post(rectify_path("dev-1"), {"new_subject_id": "dev-2"}), 404, "not_found")
    response = api.post(rectify_path("dev-1") + "?namespace=device", {"new_subject_id": "dev-2"})
    assert response.status_code == 200
    assert subject("dev-2", "device").last_seq == 2
    assert verified()


# --- the ledger ---------------------------------------------------------------------------


def test_ledger_verifies_after_rectifications_and_later_writes(api):
    factories.record("a1", analytics=True, ml_training=True)
    subject_rectify(subject_id="a1", namespace="account", new_subject_id="a2", actor=STAFF)
    assert verified()
    factories.record("a2", ml_training=False)
    subject_rectify(subject_id="a2", namespace="account", new_subject_id="a3", actor=STAFF)
    assert verified()
    services.consent_withdraw(subject_id="a3", purposes=None, actor=STAFF)
    assert verified()

    a3 = subject("a3")
    changes = list(SubjectKeyChange.objects.filter(subject=a3).order_by("from_seq"))
    assert [(c.old_key, c.new_key, c.from_seq) for c in changes] == [
        (key("a1"), key("a2"), 3),
        (key("a2"), key("a3"), 5),
    ]
    # The history under the new identifier holds the whole chain, rectifications included.
    events = api.get("/api/v1/subjects/a3/history").json()["events"]
    assert [(e["seq"], e["purpose"], e["action"]) for e in reversed(events)] == [
        (1, "analytics", "granted"),
        (2, "ml_training", "granted"),
        (3, None, "rectified"),
        (4, "ml_training", "withdrawn"),
        (5, None, "rectified"),
        (6, "analytics", "withdrawn"),
    ]
    assert all(e["prev_hash"] == p["hash"] for p, e in zip(events[1:], events, strict=False))
    # The call command agrees.
    call_command("verify_ledger")


def test_a_tampered_key_change_breaks_the_chain(api):
    factories.record("a1", analytics=True)
    subject_rectify(subject_id="a1", namespace="account", new_subject_id="a2", actor=STAFF)
    SubjectKeyChange.objects.update(old_key=key("someone-else"))
    kinds = {b.kind for b in ledger_verify().breaks}
    assert "hash_mismatch" in kinds and "key_change_mismatch" not in kinds
    SubjectKeyChange.objects.all().delete()
    assert "hash_mismatch" in {b.kind for b in ledger_verify().breaks}


def test_a_tombstone_left_under_a_former_key_still_starts_the_chain(api):
    factories.record("a1", analytics=True)
    subject_history_purge(subject=subject("a1"), reason=SubjectTombstone.Reason.EXPIRED_HISTORY)
    subject_rectify(subject_id="a1", namespace="account", new_subject_id="a2", actor=STAFF)
    factories.record("a2", analytics=False)
    assert verified()
    # The old identifier, used again, is someone new: the former holder's tombstone is not
    # theirs, so their (empty, then fresh) chain verifies too.
    Subject.objects.create(namespace="account", key=key("a1"))
    assert verified()
    factories.record("a1", analytics=True)
    assert verified()


# --- the old identifier is one never seen ---------------------------------------------------


def test_the_old_identifier_answers_like_one_never_seen(api):
    factories.record("old-id", analytics=True, security=False)
    receipt = ConsentEvent.objects.filter(subject__key=key("old-id")).first().receipt_id
    api.post("/api/v1/subjects/old-id/identifier", {"new_subject_id": "new-id"})

    def answers(identifier: str) -> list[Any]:
        base = f"/api/v1/subjects/{identifier}"
        bulk = api.post(
            "/api/v1/checks", {"purpose": "analytics", "subject_ids": [identifier], "explain": True}
        ).json()
        bulk.pop("decision_id", None)
        bulk.pop("as_of")
        singles = [api.get(f"{base}/checks/{p}").json() for p in ("analytics", "security")]
        for single in singles:
            single.pop("as_of")  # the instant each answer holds for
        bodies = [
            *singles,
            api.get(f"{base}/consents").json(),
            api.get(f"{base}/history").json(),
            api.get(f"{base}/decisions").json(),
            bulk,
        ]
        return json.loads(json.dumps(bodies).replace(identifier, "ID"))

    assert answers("old-id") == answers("never-seen")
    # The new identifier has it all: state, history and the receipts, which name it.
    assert api.get("/api/v1/subjects/new-id/checks/analytics").json()["allowed"] is True
    assert api.get(f"/api/v1/receipts/{receipt}").json()["subject_id"] == "new-id"
    # A withdrawal for the old identifier finds nothing to withdraw, as for a stranger.
    old = api.post("/api/v1/subjects/old-id/withdrawals", {})
    assert (old.status_code, old.json()["events"]) == (200, [])
    assert api.get("/api/v1/subjects/new-id/checks/analytics").json()["allowed"] is True
    # The old identifier may be used again, by someone new, with a chain of its own.
    factories.record("old-id", analytics=False)
    assert subject("old-id").last_seq == 1
    assert verified()


def test_a_rectified_events_receipt_id_is_no_consent_receipt(api):
    factories.record("old-id", analytics=True)
    event_id = api.post(rectify_path("old-id"), {"new_subject_id": "new-id"}).json()["event_id"]
    receipt = ConsentEvent.objects.get(pk=event_id).receipt_id
    assert_error(api.get(f"/api/v1/receipts/{receipt}"), 404, "not_found")


# --- what moves to the new key ------------------------------------------------------------


def test_holds_requests_outbox_and_idempotent_answers_move_to_the_new_key(api):
    factories.record("old-id", analytics=True, ml_training=True)
    withdrawn = api.post(
        "/api/v1/subjects/old-id/withdrawals",
        {"purposes": ["ml_training"]},
        headers={"Idempotency-Key": "w-1"},
    )
    assert withdrawn.status_code == 201
    hold = holds.hold_place(subject_id="old-id", reason="litigation", actor=STAFF)
    access = rights.access_request_create(subject_id="old-id", actor=STAFF)
    erasure = rights.erasure_request_create(subject_id="old-id", actor=STAFF)
    before = list(
        OutboxEvent.objects.filter(subject_key=key("old-id"))
        .order_by("seq")
        .values_list("pk", "seq")
    )
    assert [seq for _, seq in before] == [1, 2, 3]

    subject_rectify(subject_id="old-id", namespace="account", new_subject_id="new-id", actor=STAFF)

    new = key("new-id")
    hold.refresh_from_db()
    assert hold.subject_key == new
    assert AccessRequest.objects.get(pk=access.pk).subject_key == new
    moved = ErasureRequest.objects.get(pk=erasure.pk)
    assert moved.subject_key == new
    assert identity.decrypt_identifier(moved.identifier_encrypted, key=new) == "new-id"
    assert IdempotencyRecord.objects.get(key="w-1").subject_key == new
    # The outbox keeps its order under the new key, the announcement last.
    after = list(OutboxEvent.objects.filter(subject_key=new).order_by("seq"))
    assert [(e.pk, e.seq) for e in after[:3]] == before
    assert (after[3].event_type, after[3].seq) == ("subject.rectified", 4)
    for event in after:
        identifier = crypto.decrypt(bytes(event.subject_identifier_encrypted), aad=new.encode())
        assert identifier == b"new-id"
    old = key("old-id")
    assert not OutboxEvent.objects.filter(subject_key=old).exists()
    assert not LegalHold.objects.filter(subject_key=old).exists()
    assert not ErasureRequest.objects.filter(subject_key=old).exists()
    # The moved hold still holds the person's erasure back.
    assert rights.erasure_execute(request_id=erasure.pk).status == RequestStatus.HELD


def test_the_task_rekeys_the_external_tables_and_is_idempotent(api, features):
    factories.record("old-id", ml_training=True)
    features(key("old-id"), n=3)
    features(key("bob"), n=1)
    subject_rectify(subject_id="old-id", namespace="account", new_subject_id="new-id", actor=STAFF)
    change = SubjectKeyChange.objects.get()
    assert external_tables_rekey_task(change.pk) == 3
    assert external_tables_rekey_task(change.pk) == 0
    assert (ml_rows(key("old-id")), ml_rows(key("new-id")), ml_rows(key("bob"))) == (0, 3, 1)


def test_a_rekey_task_run_late_lands_the_rows_on_the_current_key(api, features):
    factories.record("first-id", ml_training=True)
    features(key("first-id"), n=2)
    subject_rectify(
        subject_id="first-id", namespace="account", new_subject_id="second-id", actor=STAFF
    )
    subject_rectify(
        subject_id="second-id", namespace="account", new_subject_id="third-id", actor=STAFF
    )
    first, second = SubjectKeyChange.objects.order_by("pk")
    # The second rectification's task runs first: nothing is under the second key yet.
    assert external_tables_rekey_task(second.pk) == 0
    assert external_tables_rekey_task(first.pk) == 2
    assert [ml_rows(key(i)) for i in ("first-id", "second-id", "third-id")] == [0, 0, 2]


# --- erasure afterwards -------------------------------------------------------------------


def test_erasure_after_rectification_removes_everything_under_every_key(api, features):
    factories.record("old-id", analytics=True, ml_training=True)
    features(key("old-id"), n=2)  # the re-key task has not run yet
    subject_rectify(subject_id="old-id", namespace="account", new_subject_id="new-id", actor=STAFF)
    factories.record("new-id", analytics=False)
    features(key("new-id"), n=1)
    person = subject("new-id")

    request = rights.erasure_request_create(subject_id="new-id", actor=STAFF)
    assert rights.erasure_execute(request_id=request.pk).status == RequestStatus.COMPLETE

    old, new = key("old-id"), key("new-id")
    assert not ConsentEvent.objects.filter(subject=person).exists()
    assert not SubjectKeyChange.objects.exists()
    assert (ml_rows(old), ml_rows(new)) == (0, 0)
    # Only the record of the rights request keeps a keyed hash, under either key.
    assert set(
        AuditEvent.objects.filter(detail__subject_key__in=[old, new]).values_list(
            "action", flat=True
        )
    ) == {"rights.erasure_request", "rights.erasure_complete"}
    assert set(
        OutboxEvent.objects.filter(subject_key__in=[old, new]).values_list("event_type", flat=True)
    ) == {"subject.erased"}
    tomb = SubjectTombstone.objects.get(reason=SubjectTombstone.Reason.ERASURE)
    assert tomb.subject_key == new
    assert [f["key"] for f in tomb.former_keys] == [old]
    assert verified()


def test_erasure_replay_finds_the_person_under_a_former_key(api):
    rectified_at = timezone.now()
    factories.record("old-id", analytics=True)
    subject_rectify(
        subject_id="old-id",
        namespace="account",
        new_subject_id="new-id",
        actor=STAFF,
        now=rectified_at,
    )
    request = rights.erasure_request_create(subject_id="new-id", actor=STAFF)
    rights.erasure_execute(request_id=request.pk)
    # A backup from before the rectification brings the person back under the old key.
    restored = Subject.objects.create(
        namespace="account",
        key=key("old-id"),
        identifier_encrypted=identity.encrypt_identifier("old-id", key=key("old-id")),
    )
    Subject.objects.filter(pk=restored.pk).update(created_at=rectified_at - timedelta(days=3))
    assert rights.erasures_replay() == [key("new-id")]
    restored.refresh_from_db()
    assert restored.identifier_encrypted is None and restored.erased_at is not None
    assert rights.erasures_replay() == []


def test_erasure_replay_leaves_someone_new_under_a_former_key_alone(api):
    factories.record("old-id", analytics=True)
    subject_rectify(subject_id="old-id", namespace="account", new_subject_id="new-id", actor=STAFF)
    request = rights.erasure_request_create(subject_id="new-id", actor=STAFF)
    rights.erasure_execute(request_id=request.pk)
    factories.record("old-id", analytics=True)  # someone new, after the rectification
    assert rights.erasures_replay() == []
    assert subject("old-id").identifier_encrypted is not None
