"""Restriction of processing (Art. 18): the periods, the checks on every path, the purges it
holds back, the erasure it never holds back, its announcements and its API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from consent import identity, services
from consent.checks.facts import PortableFacts
from consent.checks.facts_pg import PostgresFacts, facts_sql
from consent.checks.selectors import check_one, purpose_rule_get
from consent.errors import AlreadyRestricted, NotRestricted
from consent.models import ConsentEvent, Restriction, Subject
from consent.restriction.selectors import restriction_periods
from consent.restriction.services import restriction_lift, restriction_place
from governance import crypto
from governance.actors import Actor
from governance.errors import InvalidRequest
from governance.models import AuditEvent, OutboxEvent
from retention import selectors as retention_selectors
from retention.models import RetentionPolicy
from retention.services import enforcement, rights
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

STAFF = Actor("staff", "7", "dpo@example.test")
CHECKS = "/api/v1/checks"
STREAM = "/api/v1/checks/stream"
PURPOSES = ("analytics", "ml_training", "service", "security")


def path(subject_id: str = "alice", query: str = "") -> str:
    return f"/api/v1/subjects/{subject_id}/restriction" + (f"?{query}" if query else "")


def delete(api: Api, url: str) -> Any:
    return api.client.delete(url, headers=api._headers(None))


def days(n: float) -> datetime:
    return timezone.now() - timedelta(days=n)


def record(subject: str, when: datetime | None = None, **granted: bool) -> None:
    services.consent_record(
        subject_id=subject,
        decisions=[services.DecisionInput(purpose=k, granted=v) for k, v in granted.items()],
        actor=Actor.system("test"),
        now=when,
    )


def place(subject: str = "alice", when: datetime | None = None, reason: str = "disputed") -> Any:
    return restriction_place(
        subject_id=subject, namespace="account", reason=reason, actor=STAFF, now=when
    )


def lift(subject: str = "alice", when: datetime | None = None) -> Any:
    return restriction_lift(subject_id=subject, namespace="account", actor=STAFF, now=when)


def single(subject: str, purpose: str, as_of: datetime | None = None) -> tuple[bool, str]:
    _, verdict = check_one(identifier=subject, purpose_key=purpose, as_of=as_of)
    return verdict.allowed, verdict.reason


def bulk(api: Api, purpose: str, ids: list[str], as_of: datetime | None = None) -> dict:
    body: dict[str, Any] = {"purpose": purpose, "subject_ids": ids, "explain": True}
    if as_of is not None:
        body["as_of"] = as_of.isoformat()
    response = api.post(CHECKS, body)
    assert response.status_code == 200, response.content
    return {r["subject_id"]: (r["allowed"], r["reason"]) for r in response.json()["results"]}


def stream(api: Api, purpose: str, ids: list[str], as_of: datetime | None = None) -> dict:
    query = f"purpose={purpose}" + (f"&as_of={as_of.isoformat()}" if as_of else "")
    response = api.post(
        f"{STREAM}?{query.replace('+', '%2B')}",
        raw="".join(json.dumps({"subject_id": i}) + "\n" for i in ids),
        content_type="application/x-ndjson",
    )
    assert response.status_code == 200
    lines = [json.loads(x) for x in b"".join(response.streaming_content).decode().splitlines()]
    return {x["subject_id"]: (x["allowed"], x["reason"]) for x in lines if "subject_id" in x}


def over_api(api: Api, subject: str, purpose: str, as_of: datetime | None = None) -> tuple:
    url = f"/api/v1/subjects/{subject}/checks/{purpose}"
    body = (api.get(url, as_of=as_of.isoformat()) if as_of else api.get(url)).json()
    return body["allowed"], body["reason"]


# --- the service ----------------------------------------------------------------------------


def test_placing_on_an_unknown_identifier_makes_a_subject_with_one_open_period(purposes):
    periods = place("newcomer", reason="contests accuracy")
    assert periods == [
        {"started_at": periods[0]["started_at"], "ended_at": None, "reason": "contests accuracy"}
    ]
    subject = Subject.objects.get(key=identity.subject_key("newcomer"))
    assert restriction_periods(subject=subject) == periods
    audit = AuditEvent.objects.get(action="rights.restriction_place")
    assert (audit.actor_type, audit.actor_label) == ("staff", "dpo@example.test")
    assert audit.detail["subject_key"] == subject.key
    assert "contests accuracy" not in json.dumps(audit.detail)


def test_the_reason_is_stored_encrypted_and_registered_for_rotation(purposes):
    from governance.reencrypt import encrypted_fields, encrypted_fields_unregistered

    place("alice", reason="alice@example.test disputes the data")
    period = Restriction.objects.get()
    assert b"alice@example.test" not in bytes(period.reason_encrypted)
    assert crypto.ciphertext_key_id(bytes(period.reason_encrypted)) == crypto.current_key_id()
    assert "consent.Restriction.reason_encrypted" in {s.label for s in encrypted_fields()}
    assert encrypted_fields_unregistered() == []


def test_a_second_place_while_open_is_already_restricted_and_writes_nothing(purposes):
    place("alice")
    with pytest.raises(AlreadyRestricted):
        place("alice")
    assert Restriction.objects.count() == 1
    assert AuditEvent.objects.filter(action="rights.restriction_place").count() == 1


def test_lift_without_an_open_period_is_not_restricted(purposes):
    with pytest.raises(NotRestricted):
        lift("stranger")
    assert not Subject.objects.exists()  # lifting never makes a subject
    place("alice")
    lift("alice")
    with pytest.raises(NotRestricted):
        lift("alice")


def test_periods_are_history_never_overwritten(purposes):
    place("alice", when=days(10), reason="first")
    lift("alice", when=days(8))
    place("alice", when=days(5), reason="second")
    periods = lift("alice", when=days(1))
    assert [(p["reason"], p["ended_at"] is not None) for p in periods] == [
        ("first", True),
        ("second", True),
    ]
    assert periods[0]["started_at"] < periods[0]["ended_at"] <= periods[1]["started_at"]
    assert Restriction.objects.count() == 2


def test_a_period_cannot_overlap_the_previous_one_nor_end_before_it_starts(purposes):
    place("alice", when=days(5))
    lift("alice", when=days(2))
    with pytest.raises(InvalidRequest):
        place("alice", when=days(3))
    place("alice", when=days(1))
    with pytest.raises(InvalidRequest):
        lift("alice", when=days(1.5))


def test_a_blank_reason_is_refused(purposes):
    with pytest.raises(InvalidRequest):
        place("alice", reason="  ")
    assert not Subject.objects.exists()


def test_place_and_lift_announce_to_the_outbox_without_the_reason(purposes):
    place("alice", reason="secret reason")
    lift("alice")
    key = identity.subject_key("alice")
    events = list(OutboxEvent.objects.filter(subject_key=key).order_by("seq"))
    assert [e.event_type for e in events] == ["subject.restricted", "subject.restriction_lifted"]
    assert [e.seq for e in events] == [1, 2]
    assert events[0].payload["ended_at"] is None and events[1].payload["ended_at"]
    assert all("secret reason" not in json.dumps(e.payload) for e in events)
    identifier = crypto.decrypt(bytes(events[0].subject_identifier_encrypted), aad=key.encode())
    assert identifier == b"alice"


# --- the checks: every path, every purpose ----------------------------------------------------


def test_while_restricted_every_purpose_is_denied_on_the_single_check(purposes):
    record("alice", analytics=True, ml_training=True)
    place("alice")
    for purpose in PURPOSES:
        assert single("alice", purpose) == (False, "restricted")
    lift("alice")
    assert single("alice", "analytics") == (True, "granted")
    assert single("alice", "service") == (True, "contract")


def test_bulk_stream_and_single_over_the_api_deny_only_the_restricted_subject(api):
    record("alice", analytics=True)
    record("bob", analytics=True)
    place("alice")
    expected = {"alice": (False, "restricted"), "bob": (True, "granted")}
    assert bulk(api, "analytics", ["alice", "bob"]) == expected
    assert stream(api, "analytics", ["alice", "bob"]) == expected
    assert over_api(api, "alice", "analytics") == (False, "restricted")
    assert over_api(api, "bob", "analytics") == (True, "granted")
    # Legitimate interest and contract are denied too: restriction stops all processing.
    assert bulk(api, "security", ["alice", "bob"])["alice"] == (False, "restricted")
    assert stream(api, "service", ["alice"]) == {"alice": (False, "restricted")}


def test_as_of_before_inside_and_after_a_period(api):
    record("alice", when=days(20), analytics=True)
    place("alice", when=days(10))
    lift("alice", when=days(5))
    period = Restriction.objects.get()
    start, end = period.started_at, period.ended_at
    assert end is not None
    cases = {
        days(12): (True, "granted"),
        start: (False, "restricted"),  # [started_at, ...
        days(7): (False, "restricted"),
        end: (True, "granted"),  # ..., ended_at)
        days(1): (True, "granted"),
    }
    for moment, expected in cases.items():
        assert single("alice", "analytics", as_of=moment) == expected, moment
        assert over_api(api, "alice", "analytics", as_of=moment) == expected, moment
        assert bulk(api, "analytics", ["alice"], as_of=moment) == {"alice": expected}, moment
        assert stream(api, "analytics", ["alice"], as_of=moment) == {"alice": expected}, moment
    assert single("alice", "analytics") == (True, "granted")  # now: outside the period


def test_consent_writes_are_still_recorded_while_restricted(purposes):
    place("alice")
    record("alice", analytics=True)
    assert ConsentEvent.objects.filter(subject__key=identity.subject_key("alice")).count() == 1
    assert single("alice", "analytics") == (False, "restricted")
    lift("alice")
    assert single("alice", "analytics") == (True, "granted")


def test_portable_and_postgresql_facts_agree_on_restriction(purposes):
    record("alice", when=days(20), analytics=True)
    record("bob", when=days(20), analytics=True)
    place("alice", when=days(10))
    lift("alice", when=days(5))
    place("bob", when=days(3))
    rule = purpose_rule_get("analytics")
    keys = [identity.subject_key(x) for x in ("alice", "bob", "nobody")]
    for moment, as_of in ((days(7), True), (days(1), True), (timezone.now(), False)):
        with transaction.atomic():
            pg = PostgresFacts().standings(keys, rule, at=moment, as_of=as_of)
        portable = PortableFacts().standings(keys, rule, at=moment, as_of=as_of)
        assert pg.verdicts == portable.verdicts
        assert pg.subject_pks == portable.subject_pks
    assert [v.reason for v in portable.verdicts] == ["granted", "restricted", "no_consent"]


def test_every_variant_of_the_facts_query_joins_the_restriction_itself():
    """One statement per check (no extra round trip per id): the restriction is a join of
    the one SQL template, in each of its variants."""
    for as_of in (True, False):
        for with_rule, keys in ((True, "(VALUES (0, 'k')) AS k (pos, key)"), (False, "t k")):
            sql = facts_sql(keys=keys, as_of=as_of, with_rule=with_rule, ordered=not with_rule)
            assert sql.count("consent_restriction") == 1, sql


# --- retention: held back from purges, never from erasure ----------------------------------------


@pytest.fixture
def short_periods(settings: Any) -> None:
    from governance.audit import audit_floor_sync

    settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS = 0
    audit_floor_sync()


def _ledger_purge(now: datetime) -> Any:
    policy = RetentionPolicy.objects.create(
        name="test ledger", target="consent.ConsentEvent", keep_for=timedelta(days=365)
    )
    run = enforcement.retention_enforce(now=now, policy_ids=[policy.pk]).run
    return run.items.get()


def test_an_open_restriction_holds_back_retention_purges(purposes, short_periods):
    now = timezone.now()
    record("restricted", when=now - timedelta(days=800), analytics=False)
    record("free", when=now - timedelta(days=800), analytics=False)
    place("restricted")
    assert {r.key for r in retention_selectors.held_subjects()} == {
        identity.subject_key("restricted")
    }
    item = _ledger_purge(now)
    assert (item.examined, item.removed, item.held) == (2, 1, 1)
    left = set(ConsentEvent.objects.values_list("subject__key", flat=True))
    assert left == {identity.subject_key("restricted")}


def test_a_lifted_restriction_no_longer_holds_purges_back(purposes, short_periods):
    now = timezone.now()
    record("once-restricted", when=now - timedelta(days=800), analytics=False)
    place("once-restricted", when=now - timedelta(days=10))
    lift("once-restricted", when=now - timedelta(days=5))
    assert retention_selectors.held_subjects() == []
    item = _ledger_purge(now)
    assert (item.removed, item.held) == (1, 0)


@pytest.fixture
def no_external_tables(settings: Any) -> None:
    """Rights requests here reach this service's own stores only (the external feature
    table belongs to the retention tests)."""
    settings.RETENTION_EXTERNAL_TABLES = []


def test_erasure_is_never_held_back_and_removes_the_periods(purposes, no_external_tables):
    record("alice", analytics=True)
    place("alice", reason="alice says her address is wrong")
    request = rights.erasure_request_create(subject_id="alice", actor=STAFF)
    done = rights.erasure_execute(request_id=request.pk)
    assert done.status == "complete"
    assert done.progress["targets"]["consent.Restriction"] == {"status": "done", "removed": 1}
    subject = Subject.objects.get(key=identity.subject_key("alice"))
    assert subject.erased_at is not None
    assert not Restriction.objects.exists()
    assert not ConsentEvent.objects.filter(subject=subject).exists()
    # The announcements of the restriction went with the person's other outbox rows.
    assert not OutboxEvent.objects.filter(event_type__startswith="subject.restrict").exists()
    assert single("alice", "analytics") == (False, "erased")


def test_the_access_export_lists_the_periods(purposes, no_external_tables):
    place("alice", reason="accuracy")
    request = rights.access_request_create(subject_id="alice", actor=STAFF)
    done = rights.access_execute(request_id=request.pk)
    export = retention_selectors.access_export(done)
    assert export is not None
    assert [p["reason"] for p in export["restrictions"]] == ["accuracy"]


# --- the API --------------------------------------------------------------------------------


def test_api_place_get_and_lift(api):
    created = api.post(path("tenant%2F7"), {"reason": "disputed"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {"subject_id", "periods"} and body["subject_id"] == "tenant/7"
    (period,) = body["periods"]
    assert set(period) == {"started_at", "ended_at", "reason"}
    assert (period["ended_at"], period["reason"]) == (None, "disputed")
    assert api.get(path("tenant%2F7")).json() == body
    lifted = delete(api, path("tenant%2F7"))
    assert lifted.status_code == 200
    assert lifted.json()["periods"][0]["ended_at"] is not None
    assert api.get(path("tenant%2F7")).json() == lifted.json()


def test_api_conflicts_have_their_codes(api):
    assert_error(delete(api, path("alice")), 409, "not_restricted")
    assert api.post(path("alice"), {"reason": "x"}).status_code == 201
    assert_error(api.post(path("alice"), {"reason": "y"}), 409, "already_restricted")


def test_api_get_of_an_unknown_identifier_has_no_periods_and_makes_no_subject(api):
    response = api.get(path("nobody"))
    assert response.status_code == 200
    assert response.json() == {"subject_id": "nobody", "periods": []}
    assert not Subject.objects.exists()


def test_api_namespaces_are_separate(api):
    assert api.post(path("dev-1", "namespace=device"), {"reason": "x"}).status_code == 201
    assert api.get(path("dev-1")).json()["periods"] == []
    assert len(api.get(path("dev-1", "namespace=device")).json()["periods"]) == 1
    assert Subject.objects.get().namespace == "device"
    assert_error(api.get(path("dev-1", "namespace=planet")), 400, "invalid_request")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"reason": ""}, "invalid_request"),
        ({"reason": " \n\u3000"}, "invalid_request"),
        ({"reason": 0}, "invalid_request"),
        ({"reason": "a\x00b"}, "invalid_request"),
        ({"reason": "x" * 2001}, "invalid_request"),
        ([], "invalid_request"),
    ],
)
def test_api_bad_bodies_are_400_and_write_nothing(api, body, code):
    assert_error(api.post(path("alice"), body), 400, code)
    assert not Subject.objects.exists() and not Restriction.objects.exists()


def test_api_reason_is_kept_as_written_lines_and_all(api):
    periods = api.post(path("alice"), {"reason": " disputes\n\tthe address "}).json()["periods"]
    assert periods[0]["reason"] == " disputes\n\tthe address "


def test_api_bad_identifiers_are_400_on_every_method(api):
    bad = path("a%01b")
    assert_error(api.get(bad), 400, "invalid_subject_id")
    assert_error(api.post(bad, {"reason": "x"}), 400, "invalid_subject_id")
    assert_error(delete(api, bad), 400, "invalid_subject_id")
    assert not Subject.objects.exists()


def test_api_an_empty_identifier_is_404_in_the_error_shape(api):
    assert_error(api.get("/api/v1/subjects//restriction"), 404, "not_found")


def test_api_needs_the_rights_scope(make_api, purposes):
    for scope in ("consent:read", "consent:write", "checks", "admin"):
        other = make_api(scope)
        assert_error(other.get(path()), 403, "permission_denied")
        assert_error(other.post(path(), {"reason": "x"}), 403, "permission_denied")
        assert_error(delete(other, path()), 403, "permission_denied")
    assert_error(Api(None).get(path()), 401, "not_authenticated")
    assert not Restriction.objects.exists()
