"""Bulk, streamed and single checks, data uses, decisions, lineage and drift, over the API."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent import identity, services
from consent.checks import services as check_services
from consent.checks import stream as check_stream
from consent.checks.inputs import SubjectHasher
from consent.checks.selectors import purpose_rule_get
from consent.decisions.services import decisions_forget_subject
from consent.models import DataUse, Decision, DecisionLineage, Source, Subject
from governance.actors import Actor
from governance.errors import InvalidRequest
from governance.models import AuditEvent
from tests import factories
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

CHECKS = "/api/v1/checks"
STREAM = "/api/v1/checks/stream"


def at(days_ago: float) -> Any:
    return timezone.now() - timedelta(days=days_ago)


def record(subject: str, when: Any = None, source: str = Source.API, **granted: bool) -> Any:
    return services.consent_record(
        subject_id=subject,
        decisions=[services.DecisionInput(purpose=k, granted=v) for k, v in granted.items()],
        actor=Actor.system("test"),
        source=source,
        now=when,
    )


def bulk(api: Any, purpose: str, ids: list[Any], **extra: Any) -> Any:
    return api.post(CHECKS, {"purpose": purpose, "subject_ids": ids, **extra})


def explained(response: Any) -> dict[str, tuple[bool, str]]:
    assert response.status_code == 200, response.content
    return {r["subject_id"]: (r["allowed"], r["reason"]) for r in response.json()["results"]}


def stream_lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, getattr(response, "content", b"")
    raw = b"".join(response.streaming_content)  # the test client closes it at the end
    return [json.loads(line) for line in raw.decode().splitlines()]


def ndjson(ids: list[str]) -> str:
    return "".join(json.dumps({"subject_id": i}) + "\n" for i in ids)


# --- the decision rule through the bulk endpoint ------------------------------------------


def test_bulk_check_splits_allowed_and_denied_with_reasons(api):
    record("granted", ml_training=True)
    record("refused", ml_training=False)
    record("withdrawn", ml_training=True)
    record("withdrawn", ml_training=False)
    response = bulk(
        api, "ml_training", ["granted", "refused", "withdrawn", "stranger"], explain=True
    )
    body = response.json()
    assert body["purpose"] == "ml_training"
    assert body["allowed"] == ["granted"]
    assert body["denied"] == ["refused", "withdrawn", "stranger"]
    assert explained(response) == {
        "granted": (True, "granted"),
        "refused": (False, "refused"),
        "withdrawn": (False, "withdrawn"),
        "stranger": (False, "no_consent"),
    }
    granted_event = next(r for r in body["results"] if r["subject_id"] == "granted")["event_id"]
    assert granted_event == str(record_event_id("granted", "ml_training"))
    assert next(r for r in body["results"] if r["subject_id"] == "stranger")["event_id"] is None


def record_event_id(subject: str, purpose: str) -> Any:
    subject_row = Subject.objects.get(key=identity.subject_key(subject))
    return subject_row.states.get(purpose__key=purpose).event_id


def test_legitimate_interest_is_allowed_unless_objected(api):
    record("objector", security=False)
    response = bulk(api, "security", ["objector", "stranger"], explain=True)
    assert explained(response) == {
        "objector": (False, "objected"),
        "stranger": (True, "legitimate_interest"),
    }


def test_other_legal_bases_are_allowed(api):
    response = bulk(api, "service", ["anyone"], explain=True)
    assert explained(response) == {"anyone": (True, "contract")}


def test_expired_consent_is_denied_as_expired(api):
    record("old", when=at(31), direct_marketing=True)  # direct_marketing lasts 30 days
    record("fresh", when=at(29), direct_marketing=True)
    response = bulk(api, "direct_marketing", ["old", "fresh"], explain=True)
    assert explained(response) == {"old": (False, "expired"), "fresh": (True, "granted")}


def test_material_notice_version_supersedes_earlier_grants(api, purposes):
    record("before", ml_training=True)
    services.notice_version_publish(
        purpose=purposes["ml_training"], texts={"en": ("t", "b")}, material=False
    )
    assert explained(bulk(api, "ml_training", ["before"], explain=True)) == {
        "before": (True, "granted")
    }
    services.notice_version_publish(
        purpose=purposes["ml_training"], texts={"en": ("t", "changed")}, material=True
    )
    record("after", ml_training=True)
    assert explained(bulk(api, "ml_training", ["before", "after"], explain=True)) == {
        "before": (False, "notice_superseded"),
        "after": (True, "granted"),
    }


def test_gpc_opt_out_denies_even_after_a_grant(api):
    record("browser", targeted_ads=True)
    record("browser", source=Source.GPC, targeted_ads=False)
    assert explained(bulk(api, "targeted_ads", ["browser"], explain=True)) == {
        "browser": (False, "gpc_opt_out")
    }


def test_erased_subjects_are_denied_for_everything(api):
    record("gone", ml_training=True)
    subject = Subject.objects.get(key=identity.subject_key("gone"))
    services.subject_mark_erased(subject=subject)
    response = bulk(api, "ml_training", ["gone"], explain=True)
    assert explained(response) == {"gone": (False, "erased")}
    assert explained(bulk(api, "security", ["gone"], explain=True)) == {"gone": (False, "erased")}


def test_as_of_answers_from_the_ledger_before_a_withdrawal(api):
    record("u", when=at(10), ml_training=True)
    record("u", when=at(5), ml_training=False)
    now = bulk(api, "ml_training", ["u"], explain=True)
    assert explained(now) == {"u": (False, "withdrawn")}
    then = bulk(api, "ml_training", ["u"], explain=True, as_of=at(7).isoformat())
    assert explained(then) == {"u": (True, "granted")}
    assert then.json()["as_of"].startswith(at(7).date().isoformat())
    earlier = bulk(api, "ml_training", ["u"], explain=True, as_of=at(11).isoformat())
    assert explained(earlier) == {"u": (False, "no_consent")}


def test_duplicated_ids_are_answered_each_time(api):
    record("twice", analytics=True)
    body = bulk(api, "analytics", ["twice", "twice"]).json()
    assert body["allowed"] == ["twice", "twice"]


# --- decisions, lineage and drift -----------------------------------------------------------


def test_every_bulk_check_leaves_a_decision_with_counts_and_digest(api):
    record("a", analytics=True)
    first = bulk(api, "analytics", ["a", "b", "c"]).json()
    decision = Decision.objects.get(pk=first["decision_id"])
    assert (decision.status, decision.mode, decision.total) == ("complete", "bulk", 3)
    assert (decision.allowed_count, decision.denied_count) == (1, 2)
    assert decision.lineage is False and not DecisionLineage.objects.exists()
    again = bulk(api, "analytics", ["c", "a", "b"]).json()
    other = Decision.objects.get(pk=again["decision_id"])
    assert other.id_set_digest == decision.id_set_digest  # the id set, not its order
    assert bulk(api, "analytics", ["a", "b"]).json()["decision_id"] != decision.id
    detail = api.get(f"/api/v1/decisions/{decision.id}").json()
    assert detail["purpose"] == "analytics" and detail["allowed"] == 1
    assert detail["id_set_digest"] == decision.id_set_digest
    assert detail["status"] == "complete" and detail["erased_since"] == 0


def test_lineage_keeps_allowed_subjects_and_drift_names_who_changed(api):
    for name in ("stays", "withdraws", "expires", "erased"):
        record(name, when=at(20), direct_marketing=True)
    record("never", direct_marketing=False)
    response = bulk(
        api, "direct_marketing", ["stays", "withdraws", "expires", "erased", "never"], lineage=True
    )
    decision_id = response.json()["decision_id"]
    assert DecisionLineage.objects.filter(decision_id=decision_id).count() == 4
    record("withdraws", direct_marketing=False)
    record("stays", direct_marketing=True)  # re-granted, so it lasts another 30 days
    gone = Subject.objects.get(key=identity.subject_key("erased"))
    services.subject_mark_erased(subject=gone)
    assert decisions_forget_subject(subject=gone) == [Decision.objects.get(pk=decision_id).pk]

    drift = api.get(f"/api/v1/decisions/{decision_id}/drift").json()
    assert drift["erased_since"] == 0 or drift["erased_since"] == 1
    assert drift["erased_since"] == 1
    assert {(d["subject_id"], d["reason"]) for d in drift["drifted"]} == {
        ("withdraws", "withdrawn")
    }
    assert drift["next_cursor"] is None

    # "expires" lapses 30 days after its grant: 11 days from now.
    later = check_services_drift(decision_id, days_ahead=11)
    assert {(d.subject_id, d.reason) for d in later} == {
        ("withdraws", "withdrawn"),
        ("expires", "expired"),
    }


def check_services_drift(decision_id: str, days_ahead: int) -> list[Any]:
    from consent.decisions.selectors import decision_drift

    drifted, _ = decision_drift(
        decision=Decision.objects.select_related("purpose").get(pk=decision_id),
        limit=100,
        now=timezone.now() + timedelta(days=days_ahead),
    )
    return drifted


def test_drift_is_paginated_by_cursor(api):
    names = [f"s{i}" for i in range(5)]
    for name in names:
        record(name, analytics=True)
    decision_id = bulk(api, "analytics", names, lineage=True).json()["decision_id"]
    for name in names:
        record(name, analytics=False)
    first = api.get(f"/api/v1/decisions/{decision_id}/drift", limit=2).json()
    assert len(first["drifted"]) == 2 and first["next_cursor"] is not None
    seen = [d["subject_id"] for d in first["drifted"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = api.get(f"/api/v1/decisions/{decision_id}/drift", limit=2, cursor=cursor).json()
        seen += [d["subject_id"] for d in page["drifted"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == names


def test_drift_needs_lineage_and_unknown_decisions_are_404(api):
    decision_id = bulk(api, "analytics", ["x"]).json()["decision_id"]
    assert_error(api.get(f"/api/v1/decisions/{decision_id}/drift"), 400, "invalid_request")
    assert_error(api.get("/api/v1/decisions/not-a-uuid"), 404, "not_found")
    missing = "/api/v1/decisions/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e"
    assert_error(api.get(missing), 404, "not_found")
    assert_error(api.get(missing + "/drift"), 404, "not_found")


def test_subject_decisions_lists_the_decisions_that_used_the_subject(api):
    record("person", analytics=True, ml_training=True)
    used = bulk(api, "analytics", ["person"], lineage=True).json()["decision_id"]
    bulk(api, "analytics", ["person"])  # no lineage: not listed
    denied = bulk(api, "direct_marketing", ["person"], lineage=True).json()["decision_id"]
    response = api.get("/api/v1/subjects/person/decisions")
    assert response.status_code == 200
    listed = [d["decision_id"] for d in response.json()["decisions"]]
    assert listed == [used]
    assert denied not in listed
    assert api.get("/api/v1/subjects/nobody/decisions").json()["decisions"] == []


# --- data uses ------------------------------------------------------------------------------


DATA_USE = {
    "key": "recsys-2026",
    "name": "Recommender training",
    "purpose": "ml_training",
    "owner": "ml-platform@example.com",
    "description": "Trains the recommender.",
    "data_categories": ["purchase history", "clicks"],
    "recipients": ["internal"],
    "datasets": ["s3://lake/orders"],
}


def test_data_use_create_list_and_audit(api):
    response = api.post("/api/v1/data-uses", DATA_USE)
    assert response.status_code == 201, response.content
    assert response.json()["legal_basis"] == "consent"
    listed = api.get("/api/v1/data-uses").json()["data_uses"]
    assert [d["key"] for d in listed] == ["recsys-2026"]
    audit = AuditEvent.objects.get(action="data_use.create")
    assert audit.target_id == "recsys-2026"
    assert_error(api.post("/api/v1/data-uses", DATA_USE), 409, "duplicate_data_use")
    assert_error(
        api.post("/api/v1/data-uses", {**DATA_USE, "key": "x", "purpose": "nope"}),
        400,
        "unknown_purpose",
    )
    assert_error(api.post("/api/v1/data-uses", {"key": "only"}), 400, "invalid_request")
    assert DataUse.objects.count() == 1


def test_records_of_processing_export_json_and_csv(api):
    api.post("/api/v1/data-uses", DATA_USE)
    as_json = api.get("/api/v1/data-uses/export", format="json")
    assert as_json.status_code == 200
    record_row = as_json.json()["records_of_processing"][0]
    assert record_row["purpose"] == "ml_training" and record_row["legal_basis"] == "consent"
    assert record_row["recipients"] == ["internal"]
    as_csv = api.get("/api/v1/data-uses/export", format="csv")
    assert as_csv.status_code == 200 and as_csv["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
    assert rows[0]["key"] == "recsys-2026"
    assert rows[0]["data_categories"] == "purchase history; clicks"
    assert rows[0]["owner"] == "ml-platform@example.com"
    assert_error(api.get("/api/v1/data-uses/export", format="xml"), 400, "invalid_request")


def test_a_check_naming_a_data_use_records_it_and_must_match_its_purpose(api):
    api.post("/api/v1/data-uses", DATA_USE)
    response = bulk(api, "ml_training", ["a"], data_use="recsys-2026")
    decision = Decision.objects.get(pk=response.json()["decision_id"])
    assert decision.data_use is not None and decision.data_use.key == "recsys-2026"
    assert_error(
        bulk(api, "analytics", ["a"], data_use="recsys-2026"), 400, "data_use_purpose_mismatch"
    )
    assert_error(bulk(api, "ml_training", ["a"], data_use="nope"), 400, "unknown_data_use")


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"purpose": "nope", "subject_ids": ["a"]}, "unknown_purpose"),
        ({"subject_ids": ["a"]}, "unknown_purpose"),
        ({"purpose": "analytics"}, "invalid_request"),
        ({"purpose": "analytics", "subject_ids": "a"}, "invalid_request"),
        ({"purpose": "analytics", "subject_ids": ["a", 7]}, "invalid_subject_id"),
        ({"purpose": "analytics", "subject_ids": [""]}, "invalid_subject_id"),
        ({"purpose": "analytics", "subject_ids": ["x" * 256]}, "invalid_subject_id"),
        ({"purpose": "analytics", "subject_ids": ["ok", "bad\x00"]}, "invalid_subject_id"),
        ({"purpose": "analytics", "subject_ids": ["a"], "as_of": "yesterday"}, "invalid_request"),
        ({"purpose": "analytics", "subject_ids": ["a"], "as_of": "2999-01-01T00:00:00Z"}, None),
        ({"purpose": "analytics", "subject_ids": ["a"], "explain": "maybe"}, "invalid_request"),
    ],
)
def test_bad_bulk_checks_are_400_and_record_nothing(api, payload, code):
    assert_error(api.post(CHECKS, payload), 400, code or "invalid_request")
    assert not Decision.objects.exists()


def test_malformed_id_error_names_its_index(api):
    body = assert_error(bulk(api, "analytics", ["a", "b", ""]), 400, "invalid_subject_id")
    assert body["error"]["detail"] == {"field": "subject_ids", "index": 2}


def test_more_than_100000_ids_is_400(api):
    body = assert_error(bulk(api, "analytics", ["a"] * 100_001), 400, "invalid_request")
    assert body["error"]["detail"]["max"] == 100_000
    assert not Decision.objects.exists()


def test_100000_ids_fit_the_body_limit(api):
    ids = [f"subject-{i:06d}-" + "x" * 40 for i in range(100_000)]
    response = bulk(api, "service", ids)
    assert response.status_code == 200, response.content
    assert len(response.json()["allowed"]) == 100_000


def test_body_above_the_checks_limit_is_413(api):
    from consent.checks.api import CHECKS_MAX_BODY_BYTES

    raw = '{"purpose": "analytics", "subject_ids": ["' + "x" * CHECKS_MAX_BODY_BYTES + '"]}'
    assert_error(api.post(CHECKS, raw=raw), 413, "payload_too_large")


def test_body_that_is_not_an_object_is_400(api):
    assert_error(api.post(CHECKS, ["a"]), 400, "invalid_request")


# --- the single check -----------------------------------------------------------------------


def test_single_check_answers_with_reason_and_event(api):
    record("one", when=at(3), analytics=True)
    record("one", when=at(1), analytics=False)
    response = api.get("/api/v1/subjects/one/checks/analytics")
    assert response.status_code == 200
    body = response.json()
    assert (body["allowed"], body["reason"]) == (False, "withdrawn")
    assert body["event_id"] == str(record_event_id("one", "analytics"))
    earlier = api.get("/api/v1/subjects/one/checks/analytics", as_of=at(2).isoformat()).json()
    assert (earlier["allowed"], earlier["reason"]) == (True, "granted")
    stranger = api.get("/api/v1/subjects/tenant%2F7%2Fx/checks/security").json()
    assert stranger["subject_id"] == "tenant/7/x"
    assert (stranger["allowed"], stranger["reason"]) == (True, "legitimate_interest")
    assert_error(api.get("/api/v1/subjects/one/checks/nope"), 400, "unknown_purpose")
    assert_error(
        api.get("/api/v1/subjects/one/checks/analytics", as_of="not-a-date"), 400, "invalid_request"
    )
    # A single check is not a bulk decision.
    assert not Decision.objects.exists()


# --- the stream -----------------------------------------------------------------------------


def test_stream_answers_each_line_then_a_summary(api):
    record("yes", analytics=True)
    response = api.post(
        f"{STREAM}?purpose=analytics&lineage=true",
        raw=ndjson(["yes", "no", "yes"]) + "\n",
        content_type="application/x-ndjson",
    )
    lines = stream_lines(response)
    assert lines[:3] == [
        {"subject_id": "yes", "allowed": True, "reason": "granted"},
        {"subject_id": "no", "allowed": False, "reason": "no_consent"},
        {"subject_id": "yes", "allowed": True, "reason": "granted"},
    ]
    summary = lines[3]["summary"]
    assert (summary["allowed"], summary["denied"]) == (2, 1)
    decision = Decision.objects.get(pk=summary["decision_id"])
    assert (decision.status, decision.mode, decision.total) == ("complete", "stream", 3)
    assert DecisionLineage.objects.filter(decision=decision).count() == 1
    same_ids = bulk(api, "analytics", ["no", "yes", "yes"]).json()["decision_id"]
    assert Decision.objects.get(pk=same_ids).id_set_digest == decision.id_set_digest


def test_stream_with_many_chunks_and_unicode_ids(api, monkeypatch):
    monkeypatch.setattr(check_stream, "STREAM_CHUNK", 3)
    ids = [f"zoë-{i}" for i in range(10)]
    for name in ids[:4]:
        record(name, analytics=True)
    lines = stream_lines(
        api.post(
            f"{STREAM}?purpose=analytics", raw=ndjson(ids), content_type="application/x-ndjson"
        )
    )
    assert [line["subject_id"] for line in lines[:-1]] == ids
    assert [line["allowed"] for line in lines[:-1]] == [True] * 4 + [False] * 6


def test_stream_malformed_line_is_400_naming_the_line_and_records_nothing(api, monkeypatch):
    monkeypatch.setattr(check_stream, "STREAM_CHUNK", 2)
    raw = ndjson(["a", "b", "c"]) + "\n" + '{"subject_id": 5}\n' + ndjson(["d"])
    response = api.post(f"{STREAM}?purpose=analytics", raw=raw, content_type="application/x-ndjson")
    body = assert_error(response, 400, "invalid_subject_id")
    assert body["error"]["detail"] == {"line": 5}
    assert "Line 5" in body["error"]["message"]
    not_json = api.post(
        f"{STREAM}?purpose=analytics", raw='{"subject_id": "a"}\n{oops\n', content_type="x"
    )
    assert assert_error(not_json, 400, "invalid_request")["error"]["detail"] == {"line": 2}
    assert not Decision.objects.exists()


@pytest.mark.parametrize(
    "query",
    ["purpose=nope", "", "purpose=analytics&as_of=2999-01-01", "purpose=analytics&data_use=x"],
)
def test_stream_bad_parameters_are_400(api, query):
    response = api.post(f"{STREAM}?{query}", raw=ndjson(["a"]), content_type="application/x-ndjson")
    assert response.status_code == 400
    assert not Decision.objects.exists()


def test_stream_dropped_midway_leaves_the_decision_abandoned_not_complete(api, monkeypatch):
    monkeypatch.setattr(check_stream, "STREAM_CHUNK", 2)
    record("a", analytics=True)
    response = api.post(
        f"{STREAM}?purpose=analytics&lineage=true",
        raw=ndjson(["a"] * 50_000),
        content_type="application/x-ndjson",
    )
    # The client reads one block, then goes away: the server closes the answer's iterator.
    answers = response._iterator  # the generator under the test client's wrappers
    next(answers)
    answers.close()
    decision = Decision.objects.get()
    assert decision.status == "abandoned"
    assert not DecisionLineage.objects.filter(decision=decision).exists()


def test_stream_upload_cut_short_rolls_back_everything(purposes):
    def blocks():
        yield ndjson(["a", "b"]).encode()
        raise InvalidRequest("client went away")

    stream = check_services.StreamCheck(
        actor=Actor.system("test"), rule=purpose_rule_get("analytics"), lineage=True
    )
    with pytest.raises(InvalidRequest):
        stream.consume(blocks())
    assert not Decision.objects.exists()


def test_stream_accepts_ndjson_accept_header(api):
    response = api.post(
        f"{STREAM}?purpose=service",
        raw=ndjson(["a"]),
        content_type="application/x-ndjson",
        headers={"Accept": "application/x-ndjson"},
    )
    assert stream_lines(response)[0] == {"subject_id": "a", "allowed": True, "reason": "contract"}


def test_subject_hasher_matches_the_identity_key(settings):
    hasher = SubjectHasher()
    for identifier in ["a", "Zoë", "x" * 255, "tenant/7"]:
        assert hasher(identifier) == identity.subject_key(identifier)
    settings.SUBJECT_HASH_KEY = "k" * 100  # longer than a SHA-256 block
    assert SubjectHasher()("a") == identity.subject_key("a")


def test_factories_still_work(purposes):
    factories.record("f", analytics=True)
