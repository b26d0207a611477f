"""The lean path (governance/api/hot.py) answers as the DRF views do, and hands them the rest.

The single check and the consent write skip DRF's dispatch for a plain successful request.
These tests send the same requests through the lean path (the routed URL) and straight to
the DRF view, and compare status, headers and body; they also show which path served.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any
from unittest import mock

import pytest
from django.test import RequestFactory
from rest_framework.views import APIView

from consent.api.views import ConsentRecordApi
from consent.checks.api import SubjectCheckApi
from governance import ratelimit
from tests import factories
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/subjects/{}/checks/{}"


def _drf_served(self: APIView, request: Any, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the DRF view served a request the lean path should have")


def _drf_only() -> Any:
    """DRF's dispatch fails the test: whatever answers, the lean path did."""
    return mock.patch.object(APIView, "dispatch", _drf_served)


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
    _same(lean, _drf_check(key, subject_id, purpose, **params))


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
