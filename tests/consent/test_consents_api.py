"""The consent API: recording, reading, withdrawing, receipts, and every 4xx it promises."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent import services
from consent.models import ConsentContext, ConsentEvent, ConsentState, Subject
from tests import factories
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

CONSENTS = "/api/v1/consents"


def body(subject: str = "user-1", **decisions: bool) -> dict:
    return {
        "subject_id": subject,
        "decisions": [{"purpose": k, "granted": v} for k, v in decisions.items()],
        "indication_method": "button",
        "context": {"locale": "en-GB", "jurisdiction": "EU", "page": "https://shop.example/"},
    }


def ledger_counts() -> tuple[int, int, int, int]:
    return (
        ConsentEvent.objects.count(),
        ConsentState.objects.count(),
        ConsentContext.objects.count(),
        Subject.objects.count(),
    )


def test_record_returns_one_event_per_purpose_under_one_receipt(api):
    response = api.post(CONSENTS, body(analytics=True, ml_training=False))
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["subject_id"] == "user-1"
    assert {e["purpose"]: e["action"] for e in data["events"]} == {
        "analytics": "granted",
        "ml_training": "refused",
    }
    assert all(e["notice_version"] == 1 for e in data["events"])
    granted = next(e for e in data["events"] if e["purpose"] == "analytics")
    assert granted["expires_at"] is not None
    assert ConsentEvent.objects.filter(receipt_id=data["receipt_id"]).count() == 2


def test_recorded_consent_shows_in_subject_consents(api):
    api.post(CONSENTS, body(analytics=True, ml_training=False))
    response = api.get("/api/v1/subjects/user-1/consents")
    assert response.status_code == 200
    consents = {c["purpose"]: c for c in response.json()["consents"]}
    assert consents["analytics"]["status"] == "granted"
    assert consents["ml_training"]["status"] == "refused"
    assert consents["analytics"]["notice_version"] == 1


def test_refusing_a_granted_purpose_records_a_withdrawal(api):
    api.post(CONSENTS, body(analytics=True))
    response = api.post(CONSENTS, body(analytics=False))
    assert response.json()["events"][0]["action"] == "withdrawn"
    again = api.post(CONSENTS, body(analytics=False))
    assert again.json()["events"][0]["action"] == "refused"


def test_identifiers_are_compared_exactly(api):
    api.post(CONSENTS, body("User-1", analytics=True))
    api.post(CONSENTS, body("user-1 ", analytics=False))
    assert api.get("/api/v1/subjects/User-1/consents").json()["consents"][0]["status"] == "granted"
    assert api.get("/api/v1/subjects/user-1/consents").json()["consents"] == []


def test_identifier_with_slash_and_unicode_round_trips(api):
    subject = "tenant/7/Zoë"
    api.post(CONSENTS, body(subject, analytics=True))
    response = api.get("/api/v1/subjects/tenant%2F7%2FZo%C3%AB/consents")
    assert response.status_code == 200
    assert response.json()["subject_id"] == subject
    assert response.json()["consents"][0]["status"] == "granted"


def test_superseded_notice_version_is_409_and_writes_nothing(api, purposes):
    services.notice_version_publish(purpose=purposes["analytics"], texts={"en": ("A", "v2")})
    before = ledger_counts()
    payload = body(analytics=True)
    payload["decisions"][0]["notice_version"] = 1
    body_ = assert_error(api.post(CONSENTS, payload), 409, "notice_version_superseded")
    assert body_["error"]["detail"]["current_notice_version"] == 2
    assert ledger_counts() == before
    payload["decisions"][0]["notice_version"] = 2
    assert api.post(CONSENTS, payload).status_code == 201


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"subject_id": "u", "decisions": []}, 400, "invalid_request"),
        (
            {"subject_id": "", "decisions": [{"purpose": "analytics", "granted": True}]},
            400,
            "invalid_subject_id",
        ),
        ({"decisions": [{"purpose": "analytics", "granted": True}]}, 400, "invalid_request"),
        (
            {"subject_id": "u", "decisions": [{"purpose": "nope", "granted": True}]},
            400,
            "unknown_purpose",
        ),
        (
            {"subject_id": "u", "decisions": [{"purpose": "analytics", "granted": "yes"}]},
            400,
            "invalid_request",
        ),
        (
            {
                "subject_id": "u",
                "decisions": [
                    {"purpose": "analytics", "granted": True},
                    {"purpose": "analytics", "granted": False},
                ],
            },
            400,
            "duplicate_purpose",
        ),
        (
            {
                "subject_id": "u",
                "decisions": [
                    {"purpose": "analytics", "granted": True},
                    {"purpose": "nope", "granted": True},
                ],
            },
            400,
            "unknown_purpose",
        ),
        (
            {
                "subject_id": "u",
                "decisions": [{"purpose": "analytics", "granted": True}],
                "indication_method": "pre_ticked",
            },
            422,
            "non_affirmative_indication",
        ),
        (
            {
                "subject_id": "u",
                "decisions": [{"purpose": "analytics", "granted": True}],
                "subject_age": 12,
            },
            422,
            "guardian_required",
        ),
        (
            {"subject_id": "x" * 256, "decisions": [{"purpose": "analytics", "granted": True}]},
            400,
            "invalid_subject_id",
        ),
        (
            {"subject_id": "a\nb", "decisions": [{"purpose": "analytics", "granted": True}]},
            400,
            "invalid_subject_id",
        ),
        (["not", "an", "object"], 400, "invalid_request"),
    ],
)
def test_bad_consent_requests_are_4xx_and_write_nothing(api, payload, status, code):
    before = ledger_counts()
    assert_error(api.post(CONSENTS, payload), status, code)
    assert ledger_counts() == before


def test_a_guardian_may_grant_for_a_child(api):
    payload = body(analytics=True)
    payload.update(subject_age=12, given_by="guardian")
    response = api.post(CONSENTS, payload)
    assert response.status_code == 201
    assert ConsentEvent.objects.get().given_by == "guardian"


def test_malformed_json_is_400(api):
    before = ledger_counts()
    assert_error(api.post(CONSENTS, raw=b'{"subject_id": '), 400, "invalid_request")
    assert ledger_counts() == before


def test_body_over_one_mebibyte_is_413(api):
    payload = body(analytics=True)
    payload["context"]["page"] = "x" * (1024 * 1024)
    before = ledger_counts()
    assert_error(api.post(CONSENTS, payload), 413, "payload_too_large")
    assert ledger_counts() == before


def test_non_json_content_type_is_415(api):
    response = api.post(CONSENTS, raw="subject_id=u", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_idempotency_key_replays_first_answer_and_records_once(api):
    headers = {"Idempotency-Key": "abc-123"}
    first = api.post(CONSENTS, body(analytics=True), headers=headers)
    second = api.post(CONSENTS, body(analytics=True), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert ConsentEvent.objects.count() == 1


def test_idempotency_key_with_another_body_is_409(api):
    headers = {"Idempotency-Key": "abc-123"}
    api.post(CONSENTS, body(analytics=True), headers=headers)
    assert_error(
        api.post(CONSENTS, body(analytics=False), headers=headers), 409, "idempotency_key_reused"
    )
    assert ConsentEvent.objects.count() == 1


def test_idempotency_keys_belong_to_their_client(api, make_api):
    other = make_api("consent:write")
    headers = {"Idempotency-Key": "shared"}
    api.post(CONSENTS, body(analytics=True), headers=headers)
    assert other.post(CONSENTS, body(analytics=False), headers=headers).status_code == 201


def test_history_is_newest_first_and_cursor_paginated(api):
    for granted in (True, False, True, False, True):
        api.post(CONSENTS, body(analytics=granted))
    page1 = api.get("/api/v1/subjects/user-1/history", limit=2).json()
    assert [e["seq"] for e in page1["events"]] == [5, 4]
    page2 = api.get("/api/v1/subjects/user-1/history", limit=2, cursor=page1["next_cursor"]).json()
    assert [e["seq"] for e in page2["events"]] == [3, 2]
    page3 = api.get("/api/v1/subjects/user-1/history", limit=2, cursor=page2["next_cursor"]).json()
    assert [e["seq"] for e in page3["events"]] == [1]
    assert page3["next_cursor"] is None
    assert page1["events"][0]["action"] == "granted"


def test_history_rejects_bad_limit_and_cursor(api):
    assert_error(api.get("/api/v1/subjects/u/history", limit=0), 400, "invalid_request")
    assert_error(api.get("/api/v1/subjects/u/history", cursor="!!"), 400, "invalid_request")


def test_withdrawal_without_purposes_withdraws_every_grant(api):
    api.post(CONSENTS, body(analytics=True, ml_training=True, direct_marketing=False))
    response = api.post("/api/v1/subjects/user-1/withdrawals", {})
    assert response.status_code == 201
    assert sorted((e["purpose"], e["action"]) for e in response.json()["events"]) == [
        ("analytics", "withdrawn"),
        ("ml_training", "withdrawn"),
    ]
    statuses = {
        c["purpose"]: c["status"]
        for c in api.get("/api/v1/subjects/user-1/consents").json()["consents"]
    }
    assert statuses == {
        "analytics": "withdrawn",
        "ml_training": "withdrawn",
        "direct_marketing": "refused",
    }


def test_withdrawal_of_named_purposes(api):
    api.post(CONSENTS, body(analytics=True, ml_training=True))
    response = api.post("/api/v1/subjects/user-1/withdrawals", {"purposes": ["ml_training"]})
    assert [(e["purpose"], e["action"]) for e in response.json()["events"]] == [
        ("ml_training", "withdrawn")
    ]


def test_withdrawal_with_nothing_granted_changes_nothing(api):
    response = api.post("/api/v1/subjects/nobody/withdrawals", {})
    assert response.status_code == 200
    assert response.json()["events"] == [] and response.json()["receipt_id"] is None


def test_withdrawal_of_unknown_purpose_is_400(api):
    assert_error(
        api.post("/api/v1/subjects/u/withdrawals", {"purposes": ["nope"]}), 400, "unknown_purpose"
    )


def test_receipt_names_what_was_recorded_with_kantara_fields(api):
    recorded = api.post(CONSENTS, body(analytics=True, ml_training=False)).json()
    response = api.get(f"/api/v1/receipts/{recorded['receipt_id']}")
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["receipt_id"] == recorded["receipt_id"]
    assert receipt["subject_id"] == "user-1"
    kantara = receipt["kantara"]
    assert kantara["version"] == "KI-CR-v1.1.0"
    assert kantara["consentReceiptID"] == recorded["receipt_id"]
    assert kantara["jurisdiction"] == "EU"
    assert kantara["language"] == "en"
    assert kantara["piiPrincipalId"] == "user-1"
    assert kantara["piiControllers"][0]["piiController"]
    assert isinstance(kantara["consentTimestamp"], int)
    purposes = kantara["services"][0]["purposes"]
    assert {p["purposeKey"]: p["noticeVersion"] for p in purposes} == {
        "analytics": 1,
        "ml_training": 1,
    }
    assert {p["consentType"] for p in purposes} == {"EXPLICIT"}


def test_unknown_receipt_is_404(api):
    assert_error(api.get("/api/v1/receipts/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e"), 404, "not_found")
    assert_error(api.get("/api/v1/receipts/not-a-uuid"), 404, "not_found")


def test_purposes_lists_active_purposes_with_current_notice(api, purposes):
    services.notice_version_publish(purpose=purposes["analytics"], texts={"en": ("A", "v2")})
    listed = {p["key"]: p for p in api.get("/api/v1/purposes").json()["purposes"]}
    assert listed["analytics"]["notice_version"] == 2
    assert listed["security"]["legal_basis"] == "legitimate_interest"
    assert listed["targeted_ads"]["gpc_opt_out"] is True


def test_consent_past_expiry_reads_as_expired_at_once(api):
    services.consent_record(
        subject_id="user-1",
        decisions=[services.DecisionInput("direct_marketing", True)],
        actor=services.Actor.system("test"),
        now=timezone.now() - timedelta(days=31),
    )
    consents = api.get("/api/v1/subjects/user-1/consents").json()["consents"]
    assert consents[0]["status"] == "expired"


def test_unknown_subject_has_no_consents(api):
    response = api.get("/api/v1/subjects/never-seen/consents")
    assert response.status_code == 200
    assert response.json() == {"subject_id": "never-seen", "consents": []}
    assert not Subject.objects.exists()


def test_actor_and_context_are_recorded(api):
    api.post(CONSENTS, body(analytics=True), headers={"User-Agent": "pytest-agent"})
    event = ConsentEvent.objects.get()
    assert event.actor_type == "api_client" and event.actor_label.startswith("client-")
    context = ConsentContext.objects.get(receipt_id=event.receipt_id)
    assert context.user_agent_hash and "pytest-agent" not in context.user_agent_hash
    assert context.locale == "en-GB" and event.context_digest


def test_factories_record_helper(purposes):
    result = factories.record("s", analytics=True)
    assert result.events[0].action == "granted"


def test_material_notice_change_flags_the_grant_for_reconsent(api, purposes):
    api.post(CONSENTS, body(analytics=True, ml_training=True))
    services.notice_version_publish(
        purpose=purposes["analytics"], texts={"en": ("A", "v2")}, material=True
    )
    services.notice_version_publish(purpose=purposes["ml_training"], texts={"en": ("M", "v2")})
    consents = {
        c["purpose"]: c for c in api.get("/api/v1/subjects/user-1/consents").json()["consents"]
    }
    assert consents["analytics"]["reconsent_required"] is True
    assert consents["analytics"]["current_notice_version"] == 2
    assert consents["ml_training"]["reconsent_required"] is False


def test_withdrawing_everything_for_an_unknown_subject_stores_nothing(api):
    response = api.post("/api/v1/subjects/stranger/withdrawals", {})
    assert response.status_code == 200
    assert not Subject.objects.exists()


def test_deeply_nested_json_is_400_not_500(api):
    raw = '{"decisions":' + "[" * 5000 + "]" * 5000 + "}"
    assert_error(api.post(CONSENTS, raw=raw), 400, "invalid_request")


def test_unicode_control_characters_are_refused_in_identifiers(api):
    for bad in ("a\u0085b", "a\x00b"):
        payload = body(bad, analytics=True)
        assert_error(api.post(CONSENTS, payload), 400, "invalid_subject_id")
    assert_error(api.get("/api/v1/subjects/a%0Ab/consents"), 400, "invalid_subject_id")


def test_unknown_api_paths_answer_in_the_error_shape(api):
    assert_error(api.get("/api/v1/nope"), 404, "not_found")


def test_consents_read_is_the_same_on_postgresql_and_the_portable_path(api, purposes):
    from consent import identity, selectors

    api.post(CONSENTS, body(analytics=True, ml_training=True, targeted_ads=False))
    services.consent_record(
        subject_id="user-1",
        decisions=[services.DecisionInput("direct_marketing", True)],
        actor=services.Actor.system("test"),
        now=timezone.now() - timedelta(days=31),
    )
    services.notice_version_publish(
        purpose=purposes["analytics"], texts={"en": ("A", "v2")}, material=True
    )
    services.notice_version_publish(purpose=purposes["ml_training"], texts={"en": ("M", "v2")})
    key, now = identity.subject_key("user-1"), timezone.now()
    pg = selectors._STATES_OF.postgresql("account", key, now)
    assert [c.status for c in pg] == ["granted", "expired", "granted", "refused"]
    assert pg == selectors._STATES_OF.portable("account", key, now)
    assert selectors._STATES_OF.postgresql("account", "no-such-key", now) == []
