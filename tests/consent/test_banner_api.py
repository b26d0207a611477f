"""The banner API: properties, publishable keys, origins, device ids, GPC, re-ask, linking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from consent import identity, services
from consent.banner import services as banner_services
from consent.models import (
    ConsentEvent,
    ConsentState,
    Property,
    Subject,
    SubjectLink,
)
from consent.subject_tokens import subject_token_mint
from governance.actors import Actor
from governance.models import AuditEvent, IdempotencyRecord
from tests import factories
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

ORIGIN = "https://shop.example"
CONFIG = "/api/v1/banner/config"
CONSENTS = "/api/v1/banner/consents"
LINK = "/api/v1/banner/link"
TOKENS = "/api/v1/subject-tokens"
SHOWN = ["analytics", "ml_training", "targeted_ads", "service"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    cache.clear()


class Browser(Api):
    """A publishable key sent from the property's origin, as a browser would."""

    def __init__(self, key: str | None, origin: str | None = ORIGIN) -> None:
        super().__init__(key)
        self.origin = origin

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = super()._headers(None)
        if self.origin:
            headers["Origin"] = self.origin
        headers.update(extra or {})
        return headers


def make_property(purposes: dict[str, Any], name: str = "shop", **kwargs: Any) -> tuple:
    return banner_services.property_create(
        name=name,
        allowed_origins=kwargs.pop("origins", [ORIGIN]),
        purposes=[purposes[k] for k in kwargs.pop("shown", SHOWN)],
        actor=Actor.system("test"),
        texts=kwargs.pop(
            "texts",
            {
                "en": {"title": "Your privacy", "accept_all": "Accept all"},
                "fr": {"title": "Votre vie privée", "accept_all": "Tout accepter"},
            },
        ),
        **kwargs,
    )


@pytest.fixture
def shop(purposes: dict[str, Any]) -> tuple[Property, Browser]:
    prop, key = make_property(purposes)
    return prop, Browser(key)


def decisions(**granted: bool) -> list[dict[str, Any]]:
    return [{"purpose": k, "granted": v} for k, v in granted.items()]


def counts() -> tuple[int, int, int]:
    return ConsentEvent.objects.count(), ConsentState.objects.count(), Subject.objects.count()


# --- properties and keys --------------------------------------------------------------------


def test_property_creation_issues_one_publishable_key_shown_once(purposes):
    prop, key = make_property(purposes)
    assert key is not None and key.startswith("pk_")
    assert prop.api_client is not None and prop.api_client.kind == "publishable"
    stored = prop.api_client.keys.get()
    assert stored.key_hash != key and key not in stored.key_hash
    assert AuditEvent.objects.filter(action="property.create").exists()


def test_property_origins_are_normalised_and_validated(purposes):
    prop, _ = make_property(purposes, origins=["HTTPS://Shop.Example/", "http://127.0.0.1:8001"])
    assert prop.allowed_origins == ["http://127.0.0.1:8001", "https://shop.example"]
    with pytest.raises(Exception, match="no path"):
        make_property(purposes, name="bad", origins=["https://shop.example/checkout"])


def test_config_lists_shown_purposes_with_notice_versions_and_texts(shop):
    _, browser = shop
    response = browser.get(CONFIG, lang="en")
    assert response.status_code == 200, response.content
    data = response.json()
    assert [p["key"] for p in data["purposes"]] == sorted(SHOWN)
    assert all(p["notice_version"] == 1 for p in data["purposes"])
    analytics = next(p for p in data["purposes"] if p["key"] == "analytics")
    assert analytics["description"] == "We use your data for analytics."
    assert data["texts"]["title"] == "Your privacy"
    assert data["texts"]["reject_all"] == "Reject all"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Cache-Control"] == "private, no-store"


def test_config_speaks_the_asked_language_and_falls_back_to_the_default(shop, purposes):
    _, browser = shop
    services.notice_version_publish(
        purpose=purposes["analytics"],
        texts={"en": ("Analytics", "We count visits."), "fr": ("Mesure", "Nous comptons.")},
    )
    data = browser.get(CONFIG, lang="fr-CA").json()
    assert data["language"] == "fr"
    assert data["texts"]["title"] == "Votre vie privée"
    by_key = {p["key"]: p for p in data["purposes"]}
    assert by_key["analytics"]["description"] == "Nous comptons."
    assert by_key["analytics"]["notice_version"] == 2
    assert by_key["ml_training"]["language"] == "en"  # no French notice: the default
    german = browser.get(CONFIG, lang="de").json()
    assert german["language"] == "en" and german["texts"]["title"] == "Your privacy"


@pytest.mark.parametrize("lang", ["zz", "x!", "english-language-please"])
def test_unknown_or_malformed_language_is_400(shop, lang):
    _, browser = shop
    assert_error(browser.get(CONFIG, lang=lang), 400, "unknown_language")


def test_key_without_property_is_404_and_records_nothing(purposes, make_api):
    browser = Browser(make_api(kind="publishable").key)
    assert_error(browser.get(CONFIG), 404, "unknown_property")
    before = counts()
    assert_error(
        browser.post(CONSENTS, {"decisions": decisions(analytics=True)}), 404, "unknown_property"
    )
    assert counts() == before


def test_inactive_property_is_404(shop):
    prop, browser = shop
    Property.objects.filter(pk=prop.pk).update(active=False)
    assert_error(browser.get(CONFIG), 404, "unknown_property")


# --- key kinds and origins --------------------------------------------------------------------


def test_publishable_key_on_a_secret_endpoint_is_403(shop):
    _, browser = shop
    for path in ("/api/v1/purposes", "/api/v1/subjects/u/consents"):
        assert_error(browser.get(path), 403, "permission_denied")
    before = counts()
    response = browser.post("/api/v1/consents", {"subject_id": "u", "decisions": decisions()})
    assert_error(response, 403, "permission_denied")
    assert_error(browser.post(TOKENS, {"subject_id": "u"}), 403, "permission_denied")
    assert counts() == before


def test_secret_key_on_a_banner_endpoint_is_403(shop, api):
    assert_error(api.get(CONFIG, headers={"Origin": ORIGIN}), 403, "permission_denied")
    response = api.post(CONSENTS, {"decisions": decisions(analytics=True)})
    assert_error(response, 403, "permission_denied")


def test_wrong_origin_is_403_and_records_nothing(shop):
    _, browser = shop
    before = counts()
    for origin in ("https://evil.example", "https://shop.example:8443", None):
        stranger = Browser(browser.key, origin=origin)
        assert_error(stranger.get(CONFIG), 403, "origin_not_allowed")
        response = stranger.post(CONSENTS, {"decisions": decisions(analytics=True)})
        assert_error(response, 403, "origin_not_allowed")
        assert "Access-Control-Allow-Origin" not in response.headers
    assert counts() == before


def test_origin_of_another_property_is_403(shop, purposes):
    make_property(purposes, name="blog", origins=["https://blog.example"])
    _, browser = shop
    borrowed = Browser(browser.key, origin="https://blog.example")
    response = borrowed.post(CONSENTS, {"decisions": decisions(analytics=True)})
    assert_error(response, 403, "origin_not_allowed")
    assert ConsentEvent.objects.count() == 0


def test_cors_preflight_answers_only_property_origins(shop):
    _, browser = shop
    client = browser.client
    ok = client.options(
        CONSENTS,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "idempotency-key" in ok.headers["Access-Control-Allow-Headers"]
    bad = client.options(
        CONSENTS,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in bad.headers
    # Non-banner endpoints do not answer the banner's origins.
    other = client.options(
        "/api/v1/consents", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


@override_settings(BANNER_RATE_LIMIT_PER_MINUTE=3)
def test_banner_endpoints_are_rate_limited_per_client_ip(shop):
    _, browser = shop
    for _ in range(3):
        assert browser.get(CONFIG).status_code == 200
    limited = browser.get(CONFIG)
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    other_ip = browser.client.get(
        CONFIG, headers={**browser._headers(None)}, REMOTE_ADDR="10.0.0.9"
    )
    assert other_ip.status_code == 200


# --- device ids and recording ----------------------------------------------------------------


def test_first_contact_issues_an_opaque_device_id(shop):
    _, browser = shop
    data = browser.get(CONFIG).json()
    device_id = data["device_id"]
    assert device_id.startswith("dev_") and len(device_id) > 30
    assert data["subject"] == "device"
    assert data["ask"] is True
    assert {r["reason"] for r in data["reasons"]} == {"never_asked"}
    assert Subject.objects.count() == 0  # nothing stored until a choice is made


def test_banner_consent_records_for_the_device_in_its_own_namespace(shop):
    _, browser = shop
    device_id = browser.get(CONFIG).json()["device_id"]
    response = browser.post(
        CONSENTS,
        {"device_id": device_id, "decisions": decisions(analytics=True, ml_training=False)},
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["device_id"] == device_id and data["subject"] == "device"
    assert {e["purpose"]: e["action"] for e in data["events"]} == {
        "analytics": "granted",
        "ml_training": "refused",
    }
    subject = Subject.objects.get()
    assert subject.namespace == "device"
    assert subject.identifier_encrypted is not None
    assert device_id.encode() not in bytes(subject.identifier_encrypted)
    assert subject.key != device_id
    events = ConsentEvent.objects.filter(subject=subject)
    assert {e.source for e in events} == {"banner"}
    assert {e.indication_method for e in events} == {"button"}
    # The same string as an account id is another subject.
    assert not Subject.objects.filter(namespace="account").exists()


def test_banner_consent_without_device_issues_one(shop):
    _, browser = shop
    data = browser.post(CONSENTS, {"decisions": decisions(analytics=False)}).json()
    assert data["device_id"].startswith("dev_")
    assert Subject.objects.get().namespace == "device"


def test_forged_device_id_is_400(shop):
    _, browser = shop
    device_id = browser.get(CONFIG).json()["device_id"]
    forged = device_id[:-3] + ("aaa" if not device_id.endswith("aaa") else "bbb")
    for bad in (forged, "dev_made-up", "someone-else"):
        assert_error(browser.get(CONFIG, headers={"X-Device-Id": bad}), 400, "invalid_device_id")
        response = browser.post(CONSENTS, {"device_id": bad, "decisions": decisions()})
        assert_error(response, 400, "invalid_device_id")
    assert ConsentEvent.objects.count() == 0


def test_purpose_the_property_does_not_show_is_400_and_records_nothing(shop):
    _, browser = shop
    response = browser.post(
        CONSENTS, {"decisions": decisions(analytics=True, direct_marketing=True)}
    )
    body = assert_error(response, 400, "purpose_not_shown")
    assert body["error"]["detail"] == {"purposes": ["direct_marketing"]}
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    "payload",
    [
        {"decisions": []},
        {"decisions": [{"purpose": "analytics", "granted": "yes"}]},
        {"decisions": decisions(analytics=True), "indication_method": "api"},
        {"decisions": decisions(analytics=True), "indication_method": "pre_ticked"},
        {"decisions": [{"purpose": "nope", "granted": True}]},
        ["not", "an", "object"],
    ],
)
def test_bad_banner_bodies_are_400_and_record_nothing(shop, payload):
    _, browser = shop
    response = browser.post(CONSENTS, payload)
    assert response.status_code == 400, response.content
    assert_error(response, 400, response.json()["error"]["code"])
    assert counts() == (0, 0, 0)


def test_superseded_notice_version_is_409(shop, purposes):
    _, browser = shop
    services.notice_version_publish(purpose=purposes["analytics"], texts={"en": ("A", "B")})
    response = browser.post(
        CONSENTS, {"decisions": [{"purpose": "analytics", "granted": True, "notice_version": 1}]}
    )
    assert_error(response, 409, "notice_version_superseded")
    assert counts() == (0, 0, 0)


def test_checkbox_indication_is_recorded(shop):
    _, browser = shop
    browser.post(
        CONSENTS, {"decisions": decisions(analytics=True), "indication_method": "checkbox"}
    )
    assert ConsentEvent.objects.get().indication_method == "checkbox"


def test_banner_consent_honours_idempotency_key(shop):
    _, browser = shop
    device_id = browser.get(CONFIG).json()["device_id"]
    payload = {"device_id": device_id, "decisions": decisions(analytics=True)}
    headers = {"Idempotency-Key": "abc-1"}
    first = browser.post(CONSENTS, payload, headers=headers)
    again = browser.post(CONSENTS, payload, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()  # the device id included
    assert ConsentEvent.objects.count() == 1
    stored = IdempotencyRecord.objects.get()
    assert "device_id" not in str(stored.response_body)  # not even encrypted
    assert stored.key != "abc-1"  # scoped: a keyed hash of device, origin and key
    other = browser.post(
        CONSENTS, {**payload, "decisions": decisions(analytics=False)}, headers=headers
    )
    assert_error(other, 409, "idempotency_key_reused")


def test_two_devices_sending_one_idempotency_key_get_their_own_answers(shop):
    _, browser = shop
    headers = {"Idempotency-Key": "same-key"}
    mine, theirs = (browser.get(CONFIG).json()["device_id"] for _ in range(2))
    answers = [
        browser.post(
            CONSENTS, {"device_id": d, "decisions": decisions(analytics=True)}, headers=headers
        )
        for d in (mine, theirs)
    ]
    assert [a.status_code for a in answers] == [201, 201]
    assert [a.json()["device_id"] for a in answers] == [mine, theirs]
    assert "Idempotent-Replayed" not in answers[1].headers
    for device_id in (mine, theirs):
        subject = Subject.objects.get(key=identity.subject_key(device_id), namespace="device")
        assert ConsentEvent.objects.filter(subject=subject).count() == 1
    # New visitors naming no device yet: nothing to scope the key by, so never replayed.
    fresh = [
        browser.post(CONSENTS, {"decisions": decisions(analytics=True)}, headers=headers)
        for _ in range(2)
    ]
    assert [a.status_code for a in fresh] == [201, 201]
    issued = [a.json()["device_id"] for a in fresh]
    assert len(set(issued) | {mine, theirs}) == 4
    assert not any("Idempotent-Replayed" in a.headers for a in fresh)


def test_banner_idempotency_key_is_scoped_by_origin(purposes):
    _, key = make_property(purposes, origins=[ORIGIN, "https://blog.example"])
    shop_page, blog_page = Browser(key), Browser(key, origin="https://blog.example")
    device_id = shop_page.get(CONFIG).json()["device_id"]
    payload = {"device_id": device_id, "decisions": decisions(analytics=True)}
    headers = {"Idempotency-Key": "k"}
    assert shop_page.post(CONSENTS, payload, headers=headers).status_code == 201
    elsewhere = blog_page.post(CONSENTS, payload, headers=headers)
    assert elsewhere.status_code == 201 and "Idempotent-Replayed" not in elsewhere.headers
    assert IdempotencyRecord.objects.count() == 2


# --- re-ask ------------------------------------------------------------------------------------


def _decide(browser: Browser, **granted: bool) -> str:
    data = browser.post(CONSENTS, {"decisions": decisions(**granted)}).json()
    return data["device_id"]


def test_after_a_choice_config_does_not_ask_again(shop):
    _, browser = shop
    device_id = _decide(browser, analytics=True, ml_training=False, targeted_ads=False)
    data = browser.get(CONFIG, headers={"X-Device-Id": device_id}).json()
    assert data["ask"] is False and data["reasons"] == []
    assert data["device_id"] == device_id
    statuses = {p["key"]: p["status"] for p in data["purposes"]}
    assert statuses == {
        "analytics": "granted",
        "ml_training": "refused",
        "targeted_ads": "refused",
        "service": None,
    }


def test_a_purpose_never_decided_is_asked(shop):
    _, browser = shop
    device_id = _decide(browser, analytics=True)
    data = browser.get(CONFIG, headers={"X-Device-Id": device_id}).json()
    assert data["ask"] is True
    assert {r["purpose"]: r["reason"] for r in data["reasons"]} == {
        "ml_training": "never_asked",
        "targeted_ads": "never_asked",
    }


def test_material_notice_change_asks_again_and_minor_does_not(shop, purposes):
    _, browser = shop
    device_id = _decide(browser, analytics=True, ml_training=True, targeted_ads=False)
    headers = {"X-Device-Id": device_id}
    services.notice_version_publish(purpose=purposes["ml_training"], texts={"en": ("t", "typo")})
    assert browser.get(CONFIG, headers=headers).json()["ask"] is False
    services.notice_version_publish(
        purpose=purposes["analytics"], texts={"en": ("t", "new use")}, material=True
    )
    data = browser.get(CONFIG, headers=headers).json()
    assert data["ask"] is True
    assert data["reasons"] == [{"purpose": "analytics", "reason": "notice_changed"}]


def test_expired_grant_asks_again(shop):
    _, browser = shop
    device_id = _decide(browser, analytics=True, ml_training=False, targeted_ads=False)
    ConsentState.objects.filter(purpose__key="analytics").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    data = browser.get(CONFIG, headers={"X-Device-Id": device_id}).json()
    assert data["reasons"] == [{"purpose": "analytics", "reason": "expired"}]


# --- Global Privacy Control ----------------------------------------------------------------


def test_gpc_refuses_every_opt_out_purpose_even_when_the_request_grants_it(shop):
    _, browser = shop
    response = browser.post(
        CONSENTS,
        {"decisions": decisions(analytics=True, targeted_ads=True)},
        headers={"Sec-GPC": "1"},
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["gpc"] is True
    by_purpose = {(e["purpose"], e["action"], e["source"]) for e in data["events"]}
    assert by_purpose == {("analytics", "granted", "banner"), ("targeted_ads", "refused", "gpc")}
    event = ConsentEvent.objects.get(purpose__key="targeted_ads")
    assert (event.action, event.source, event.indication_method) == ("refused", "gpc", "gpc")
    assert not ConsentEvent.objects.filter(purpose__key="targeted_ads", action="granted").exists()
    assert ConsentState.objects.get(purpose__key="targeted_ads").gpc is True


def test_gpc_refuses_whatever_the_state_and_never_withdraws(shop):
    _, browser = shop
    device_id = _decide(browser, targeted_ads=True)
    response = browser.post(
        CONSENTS, {"device_id": device_id, "decisions": []}, headers={"Sec-GPC": "1"}
    )
    assert response.status_code == 201, response.content
    actions = list(
        ConsentEvent.objects.filter(purpose__key="targeted_ads")
        .order_by("seq")
        .values_list("action", "source")
    )
    assert actions == [("granted", "banner"), ("refused", "gpc")]
    assert not ConsentEvent.objects.filter(action="withdrawn").exists()
    # A refusal stops processing but deletes nothing.
    assert Subject.objects.get().identifier_encrypted is not None


@pytest.mark.parametrize("value", ["0", "true", "1 ", "yes", ""])
def test_other_gpc_values_are_ignored(shop, value):
    _, browser = shop
    data = browser.post(
        CONSENTS, {"decisions": decisions(targeted_ads=True)}, headers={"Sec-GPC": value}
    ).json()
    assert data["gpc"] is False
    assert [(e["purpose"], e["action"]) for e in data["events"]] == [("targeted_ads", "granted")]


def test_gpc_absent_later_changes_nothing_but_an_explicit_grant_may_grant_again(shop):
    _, browser = shop
    device_id = browser.post(
        CONSENTS, {"decisions": decisions(analytics=True)}, headers={"Sec-GPC": "1"}
    ).json()["device_id"]
    headers = {"X-Device-Id": device_id}
    before = ConsentEvent.objects.count()
    data = browser.get(CONFIG, headers=headers).json()  # no header now
    assert ConsentEvent.objects.count() == before
    ads = next(p for p in data["purposes"] if p["key"] == "targeted_ads")
    assert (ads["status"], ads["status_source"]) == ("refused", "gpc")
    browser.post(CONSENTS, {"device_id": device_id, "decisions": decisions(analytics=False)})
    assert ConsentState.objects.get(purpose__key="targeted_ads").status == "refused"
    browser.post(CONSENTS, {"device_id": device_id, "decisions": decisions(targeted_ads=True)})
    state = ConsentState.objects.get(purpose__key="targeted_ads")
    assert (state.status, state.gpc) == ("granted", False)


def test_config_reports_a_pending_gpc_signal_without_recording(shop):
    _, browser = shop
    data = browser.get(CONFIG, headers={"Sec-GPC": "1"}).json()
    assert data["gpc"] is True and data["gpc_pending"] is True
    assert ConsentEvent.objects.count() == 0
    device_id = data["device_id"]
    browser.post(CONSENTS, {"device_id": device_id, "decisions": []}, headers={"Sec-GPC": "1"})
    again = browser.get(CONFIG, headers={"Sec-GPC": "1", "X-Device-Id": device_id}).json()
    assert again["gpc_pending"] is False


def test_empty_decisions_without_gpc_is_400(shop):
    _, browser = shop
    assert_error(browser.post(CONSENTS, {"decisions": []}), 400, "invalid_request")


def test_gpc_well_known_file_is_served(client):
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    data = response.json()
    assert data["gpc"] is True
    assert len(data["lastUpdate"]) == 10 and data["lastUpdate"][4] == "-"


def test_banner_js_is_served_as_javascript(client):
    response = client.get("/banner.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    source = response.content.decode()
    assert "/api/v1/banner/config" in source and "localStorage" in source


# --- subject tokens and linking ------------------------------------------------------------


def test_subject_token_is_minted_with_a_secret_key(shop, make_api):
    writer = make_api("consent:write")
    response = writer.post(TOKENS, {"subject_id": "user-42"})
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["token"].startswith("st_") and "user-42" not in data["token"]
    assert data["expires_at"]
    reader = make_api("consent:read")
    assert_error(reader.post(TOKENS, {"subject_id": "user-42"}), 403, "permission_denied")
    assert_error(writer.post(TOKENS, {}), 400, "invalid_request")


def test_token_subject_receives_the_banner_choice(shop):
    _, browser = shop
    token, _ = subject_token_mint(subject_id="user-42")
    data = browser.post(
        CONSENTS, {"subject_token": token, "decisions": decisions(analytics=True)}
    ).json()
    assert data["subject"] == "account" and data["device_id"] is None
    subject = Subject.objects.get()
    assert subject.namespace == "account"
    assert ConsentState.objects.get(subject=subject).status == "granted"
    config = browser.get(CONFIG, headers={"X-Subject-Token": token}).json()
    assert config["subject"] == "account"
    assert {p["key"]: p["status"] for p in config["purposes"]}["analytics"] == "granted"


def test_forged_or_expired_subject_token_is_400_and_records_nothing(shop):
    _, browser = shop
    token, _ = subject_token_mint(subject_id="user-42")
    expired, _ = subject_token_mint(subject_id="user-42", now=timezone.now() - timedelta(hours=1))
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    cases = [
        (forged, "invalid_subject_token"),
        ("st_bm90LWEtdG9rZW4", "invalid_subject_token"),
        ("user-42", "invalid_subject_token"),
        (expired, "subject_token_expired"),
    ]
    for bad, code in cases:
        response = browser.post(
            CONSENTS, {"subject_token": bad, "decisions": decisions(analytics=True)}
        )
        assert_error(response, 400, code)
        assert_error(browser.get(CONFIG, headers={"X-Subject-Token": bad}), 400, code)
    assert counts() == (0, 0, 0)


def test_linking_carries_device_choices_to_the_account_by_appending(shop):
    _, browser = shop
    factories.record("user-42", ml_training=True)  # the account's own, older choice
    device_id = _decide(browser, analytics=True, ml_training=False)
    device = Subject.objects.get(namespace="device")
    device_events = list(ConsentEvent.objects.filter(subject=device).values_list("hash", "id"))
    # the device decided later on targeted_ads
    browser.post(CONSENTS, {"device_id": device_id, "decisions": decisions(targeted_ads=False)})
    token, _ = subject_token_mint(subject_id="user-42")
    response = browser.post(LINK, {"device_id": device_id, "subject_token": token})
    assert response.status_code == 200, response.content
    assert sorted(response.json()["carried"]) == ["analytics", "ml_training", "targeted_ads"]
    account = Subject.objects.get(namespace="account")
    states = {s.purpose.key: s for s in ConsentState.objects.filter(subject=account)}
    assert {k: s.status for k, s in states.items()} == {
        "analytics": "granted",
        "ml_training": "refused",  # the device's refusal came after the account's grant
        "targeted_ads": "refused",
    }
    # appended, nothing rewritten: the account keeps its first event, the device its own
    actions = list(
        ConsentEvent.objects.filter(subject=account)
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions[0] == "granted" and len(actions) == 4
    assert (
        list(ConsentEvent.objects.filter(subject=device).values_list("hash", "id")[:2])
        == device_events[:2]
    )
    link = SubjectLink.objects.get()
    assert (link.device_subject, link.account_subject) == (device, account)
    assert AuditEvent.objects.filter(action="subject.link").exists()
    # Linking again carries nothing more.
    again = browser.post(LINK, {"device_id": device_id, "subject_token": token}).json()
    assert again == {"linked": False, "carried": [], "receipt_id": None}
    assert ConsentEvent.objects.filter(subject=account).count() == 4


def test_a_newer_account_choice_wins_over_an_older_device_choice(shop):
    _, browser = shop
    device_id = _decide(browser, analytics=True)
    factories.record("user-42", analytics=False)  # later than the device's grant
    token, _ = subject_token_mint(subject_id="user-42")
    data = browser.post(LINK, {"device_id": device_id, "subject_token": token}).json()
    assert data["carried"] == []
    account = Subject.objects.get(namespace="account")
    assert ConsentState.objects.get(subject=account).status == "refused"


def test_banner_consent_with_token_and_device_links_then_records(shop):
    _, browser = shop
    device_id = _decide(browser, ml_training=True)
    token, _ = subject_token_mint(subject_id="user-7")
    data = browser.post(
        CONSENTS,
        {"device_id": device_id, "subject_token": token, "decisions": decisions(analytics=True)},
    ).json()
    assert data["subject"] == "account" and data["carried"] == ["ml_training"]
    account = Subject.objects.get(namespace="account")
    assert {s.purpose.key for s in ConsentState.objects.filter(subject=account)} == {
        "analytics",
        "ml_training",
    }


def test_gpc_with_a_token_is_recorded_against_the_account_and_the_device(shop):
    _, browser = shop
    device_id = _decide(browser, analytics=True)
    token, _ = subject_token_mint(subject_id="user-9")
    response = browser.post(
        CONSENTS,
        {"device_id": device_id, "subject_token": token, "decisions": []},
        headers={"Sec-GPC": "1"},
    )
    assert response.status_code == 201, response.content
    for namespace in ("account", "device"):
        state = ConsentState.objects.get(subject__namespace=namespace, purpose__key="targeted_ads")
        assert (state.status, state.gpc) == ("refused", True)


@pytest.mark.django_db(transaction=True)
def test_config_memos_follow_every_change_made_in_this_process(purposes):
    # Outside a transaction the property, its texts and origins are memoised (a second at
    # most); saving what they mirror clears them at once, so no answer here is stale.
    prop, key = make_property(purposes, shown=["analytics"])
    browser = Browser(key)

    def config() -> dict[str, Any]:
        response = browser.get(CONFIG, lang="en")
        assert response.status_code == 200, response.content
        return response.json()

    assert config()["texts"]["title"] == "Your privacy"
    assert config()["texts"]["title"] == "Your privacy"  # served from the memo
    text = prop.texts.get(language="en")
    text.title = "Privacy, again"
    text.save()
    assert config()["texts"]["title"] == "Privacy, again"
    services.notice_version_publish(
        purpose=purposes["analytics"], texts={"en": ("Analytics v2", "Second text.")}
    )
    (analytics,) = config()["purposes"]
    assert (analytics["notice_version"], analytics["title"]) == (2, "Analytics v2")
    prop.purposes.add(purposes["service"])  # a many-to-many change, no save()
    assert [p["key"] for p in config()["purposes"]] == ["analytics", "service"]
    prop.allowed_origins = ["https://other.example"]
    prop.save()
    assert_error(browser.get(CONFIG), 403, "origin_not_allowed")
