"""The lean path (governance/api/hot.py) answers as the DRF views do, and hands them the rest.

The single check, the consent write, a subject's consents and the banner's configuration
skip DRF's dispatch for a plain successful request. These tests send the same requests
through the lean path (the routed URL) and to the DRF view (straight, or through the same
middleware with the lean path turned away), and compare status, headers and body; they also
show which path served.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import RequestFactory, override_settings
from rest_framework.views import APIView

from consent.api.views import ConsentRecordApi
from consent.banner import services as banner_services
from consent.checks.api import SubjectCheckApi
from consent.models import Property
from consent.subject_tokens import subject_token_mint
from governance import ratelimit
from governance.actors import Actor
from tests import factories
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/subjects/{}/checks/{}"


def _drf_served(self: APIView, request: Any, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the DRF view served a request the lean path should have")


def _drf_only() -> Any:
    """DRF's dispatch fails the test: whatever answers, the lean path did."""
    return mock.patch.object(APIView, "dispatch", _drf_served)


def _drf_forced() -> Any:
    """The lean path turns every request away: the DRF view serves it, behind the same
    middleware (CORS, security headers) as the lean path's answers."""
    return mock.patch("governance.api.hot._allowed_client", return_value=None)


def _drf_check(key: str, subject_id: str, purpose: str, **params: str) -> Any:
    request = RequestFactory().get(
        CHECK.format(subject_id, purpose), params, headers={"Authorization": f"Bearer {key}"}
    )
    response = SubjectCheckApi.as_view()(request, subject_id=subject_id, purpose=purpose)
    return response.render() if hasattr(response, "render") else response


def _same(lean: Any, drf: Any) -> None:
    assert lean.status_code == drf.status_code
    assert lean["Content-Type"] == drf["Content-Type"]
    assert lean.get("Allow") == drf.get("Allow")
    assert json.loads(lean.content) == json.loads(drf.content)


@pytest.mark.parametrize(
    "subject_id, purpose, params",
    [
        ("granted-1", "analytics", {}),
        ("never-asked", "analytics", {}),
        ("granted-1", "analytics", {"as_of": "2020-01-01T00:00:00Z"}),
    ],
)
def test_check_answers_as_the_drf_view_does(make_api, purposes, subject_id, purpose, params):
    _, key = factories.api_client(scopes=["checks"])
    factories.record("granted-1", analytics=True)
    api = make_api("checks")
    api.key = key
    with _drf_only():
        lean = api.get(CHECK.format(subject_id, purpose), **params)
    drf = _drf_check(key, subject_id, purpose, **params)
    if "as_of" not in params:  # each answers the instant it used: now, a moment apart
        lean_at, drf_at = json.loads(lean.content)["as_of"], json.loads(drf.content)["as_of"]
        assert lean_at.endswith("Z") and drf_at.endswith("Z") and lean_at <= drf_at
        lean.content = lean.content.replace(lean_at.encode(), drf_at.encode())
    _same(lean, drf)


@pytest.mark.parametrize(
    "purpose, params", [("no_such_purpose", {}), ("analytics", {"as_of": "yesterday"})]
)
def test_check_errors_come_from_the_drf_view(make_api, purposes, purpose, params):
    _, key = factories.api_client(scopes=["checks"])
    api = make_api("checks")
    api.key = key
    lean = api.get(CHECK.format("u-1", purpose), **params)
    assert 400 <= lean.status_code < 500 and set(lean.json()) == {"error"}
    _same(lean, _drf_check(key, "u-1", purpose, **params))


def test_requests_the_lean_path_cannot_serve_reach_drf(make_api, purposes):
    api = make_api("checks")
    path = CHECK.format("u-1", "analytics")
    assert_error(api.get(path, headers={"Accept": "text/html"}), 406, "not_acceptable")
    assert_error(make_api("consent:read").get(path), 403, "permission_denied")
    api.key = "sk_unknown"
    assert_error(api.get(path), 401, "not_authenticated")


def test_rate_limits_count_each_request_once(make_api, purposes, monkeypatch):
    # A minute of our own: no window boundary mid-test, no bucket left by an earlier run.
    moment = 1_900_000_000.0 + random.randint(0, 10**6) * 60
    monkeypatch.setattr(ratelimit, "_clock", lambda: moment)
    client, key = factories.api_client(scopes=["checks"])
    client.rate_limit_per_minute = 2
    client.save(update_fields=["rate_limit_per_minute"])
    api = make_api("checks")
    api.key = key
    with _drf_only():
        assert api.get(CHECK.format("u-1", "analytics")).status_code == 200
        assert api.get(CHECK.format("u-2", "analytics")).status_code == 200
    limited = api.get(CHECK.format("u-3", "analytics"))
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) > 0


def _normalised(body: dict[str, Any]) -> dict[str, Any]:
    uuid_re = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    text = json.dumps({k: v for k, v in body.items() if k != "subject_id"}, sort_keys=True)
    text = re.sub(uuid_re, "<uuid>", text)
    return json.loads(re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "<time>", text))


def test_consent_write_answers_as_the_drf_view_does(make_api, purposes):
    api = make_api("consent:write")
    body = {
        "decisions": [
            {"purpose": "analytics", "granted": True},
            {"purpose": "ml_training", "granted": False},
        ],
        "indication_method": "button",
        "context": {"locale": "de-DE"},
    }
    with _drf_only():
        lean = api.post("/api/v1/consents", {"subject_id": "lean-1", **body})
    request = RequestFactory().post(
        "/api/v1/consents",
        json.dumps({"subject_id": "drf-1", **body}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    drf = ConsentRecordApi.as_view()(request)
    drf.render()
    assert lean.status_code == drf.status_code == 201
    assert lean["Content-Type"] == drf["Content-Type"] and lean["Allow"] == drf["Allow"]
    assert lean.json()["subject_id"] == "lean-1"
    assert _normalised(lean.json()) == _normalised(json.loads(drf.content))


@pytest.mark.parametrize(
    "body, headers, status",
    [
        ({"subject_id": "u-1", "decisions": [{"purpose": "nope", "granted": True}]}, {}, 400),
        ({"subject_id": "u-1", "decisions": []}, {}, 400),
        ({"subject_id": "é-1", "decisions": [{"purpose": "analytics", "granted": True}]}, {}, 201),
        (
            {"subject_id": "u-2", "decisions": [{"purpose": "analytics", "granted": True}]},
            {"Idempotency-Key": "k-1"},
            201,
        ),
    ],
)
def test_consent_bodies_the_lean_path_leaves_go_to_drf(make_api, purposes, body, headers, status):
    api = make_api("consent:write")
    response = api.post("/api/v1/consents", body, headers=headers)
    assert response.status_code == status, response.content
    if status == 400:
        assert set(response.json()) == {"error"}


# --- GET /subjects/{id}/consents -----------------------------------------------------------

CONSENTS = "/api/v1/subjects/{}/consents"
# Headers an answer's meaning or a browser's handling depends on.
HEADERS = (
    "Content-Type",
    "Allow",
    "Cache-Control",
    "Vary",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
    "Retry-After",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
)


def _same_answer(lean: Any, drf: Any, ignore: tuple[str, ...] = ()) -> None:
    assert lean.status_code == drf.status_code, (lean.content, drf.content)
    for header in HEADERS:
        assert lean.get(header) == drf.get(header), header
    lean_body, drf_body = json.loads(lean.content), json.loads(drf.content)
    for name in ignore:
        lean_body.pop(name, None), drf_body.pop(name, None)
    assert lean_body == drf_body


@pytest.mark.parametrize("subject_id", ["granted-1", "never-asked", "é/with slash"])
def test_consents_read_answers_as_the_drf_view_does(make_api, purposes, subject_id):
    factories.record("granted-1", analytics=True, ml_training=False)
    factories.record("é/with slash", targeted_ads=True)
    api = make_api("consent:read")
    path = CONSENTS.format(subject_id.replace("/", "%2F"))
    with _drf_only():
        lean = api.get(path)
    with _drf_forced():
        drf = api.get(path)
    assert lean.status_code == 200
    _same_answer(lean, drf)
    assert json.loads(lean.content) == json.loads(_drf_consents(api.key, subject_id).content)


def _drf_consents(key: str, subject_id: str) -> Any:
    from consent.api.views import SubjectConsentsApi

    request = RequestFactory().get(
        CONSENTS.format(subject_id), headers={"Authorization": f"Bearer {key}"}
    )
    response = SubjectConsentsApi.as_view()(request, subject_id=subject_id)
    return response.render()


@pytest.mark.parametrize(
    "subject_id, scopes, key, headers, status",
    [
        ("x" * 300, ["consent:read"], None, {}, 400),  # an identifier past its length
        ("u-1", ["checks"], None, {}, 403),
        ("u-1", ["consent:read"], "sk_unknown", {}, 401),
        ("u-1", ["consent:read"], None, {"Accept": "text/html"}, 406),
    ],
)
def test_consents_read_errors_come_from_the_drf_view(
    make_api, purposes, subject_id, scopes, key, headers, status
):
    api = make_api(*scopes)
    api.key = key or api.key
    lean = api.get(CONSENTS.format(subject_id), headers=headers)
    with _drf_forced():
        drf = api.get(CONSENTS.format(subject_id), headers=headers)
    assert lean.status_code == status and set(lean.json()) == {"error"}
    _same_answer(lean, drf)


# --- GET /banner/config ---------------------------------------------------------------------

CONFIG = "/api/v1/banner/config"
ORIGIN = "https://shop.example"


@pytest.fixture
def shop(purposes: dict[str, Any]) -> tuple[Property, str]:
    cache.clear()  # no banner rate-limit bucket left by another test
    prop, key = banner_services.property_create(
        name="shop",
        allowed_origins=[ORIGIN],
        purposes=[purposes[k] for k in ("analytics", "targeted_ads", "service")],
        actor=Actor.system("test"),
        texts={"en": {"title": "Your privacy"}, "fr": {"title": "Votre vie privée"}},
    )
    assert key is not None
    return prop, key


def _banner(key: str | None, headers: dict[str, str] | None = None, **params: str) -> Any:
    return Api(key).get(CONFIG, headers={"Origin": ORIGIN, **(headers or {})}, **params)


def _device_with_choices(key: str) -> str:
    response = Api(key).post(
        "/api/v1/banner/consents",
        {"decisions": [{"purpose": "analytics", "granted": True}]},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 201, response.content
    return str(response.json()["device_id"])


@pytest.mark.parametrize(
    "case", ["new device", "known device", "subject token", "language", "gpc", "unknown device"]
)
def test_banner_config_answers_as_the_drf_view_does(shop, case):
    _, key = shop
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if case == "known device":
        headers["X-Device-Id"] = _device_with_choices(key)
    elif case == "unknown device":
        headers["X-Device-Id"] = banner_services.device_id_new()
    elif case == "subject token":
        factories.record("account-1", analytics=True)
        headers["X-Subject-Token"] = subject_token_mint(subject_id="account-1")[0]
    elif case == "language":
        params["lang"] = "fr-CA"
    elif case == "gpc":
        headers["Sec-GPC"] = "1"
    with _drf_only():
        lean = _banner(key, headers, **params)
    with _drf_forced():
        drf = _banner(key, headers, **params)
    assert lean.status_code == 200, lean.content
    assert lean["Access-Control-Allow-Origin"] == ORIGIN
    assert lean["Cache-Control"] == "private, no-store"
    if not {"X-Device-Id", "X-Subject-Token"} & set(headers):  # each issues a device id
        assert lean.json()["device_id"] != drf.json()["device_id"]
        banner_services.device_id_verify(lean.json()["device_id"])
        _same_answer(lean, drf, ignore=("device_id",))
    else:
        _same_answer(lean, drf)


@pytest.mark.parametrize(
    "case, status, code",
    [
        ("unknown language", 400, "unknown_language"),
        ("forged device", 400, "invalid_device_id"),
        ("bad token", 400, "invalid_subject_token"),
        ("other origin", 403, "origin_not_allowed"),
        ("no origin", 403, "origin_not_allowed"),
        ("secret key", 403, "permission_denied"),
        ("unknown key", 401, "not_authenticated"),
        ("inactive property", 404, "unknown_property"),
        ("html", 406, "not_acceptable"),
    ],
)
def test_banner_config_errors_come_from_the_drf_view(shop, make_api, case, status, code):
    prop, key = shop
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if case == "unknown language":
        params["lang"] = "xx"
    elif case == "forged device":
        headers["X-Device-Id"] = "dev_forged"
    elif case == "bad token":
        headers["X-Subject-Token"] = "not-a-token"
    elif case == "other origin":
        headers["Origin"] = "https://elsewhere.example"
    elif case == "no origin":
        headers["Origin"] = ""
    elif case == "secret key":
        key = make_api("consent:read").key
    elif case == "unknown key":
        key = "pk_unknown"
    elif case == "inactive property":
        Property.objects.filter(pk=prop.pk).update(active=False)
    elif case == "html":
        headers["Accept"] = "text/html"
    lean = _banner(key, headers, **params)
    with _drf_forced():
        drf = _banner(key, headers, **params)
    assert_error(lean, status, code)
    _same_answer(lean, drf)


def test_banner_rate_limit_counts_each_request_once(shop):
    _, key = shop
    with override_settings(BANNER_RATE_LIMIT_PER_MINUTE=2):
        # Turned away by the lean path after its limit was counted: the view counts it no more.
        assert_error(_banner(key, lang="xx"), 400, "unknown_language")
        with _drf_only():
            assert _banner(key).status_code == 200
        limited = _banner(key)
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) > 0
    assert limited["Access-Control-Allow-Origin"] == ORIGIN
