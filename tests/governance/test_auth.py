"""Keys and scopes: 401 without a valid key, 403 without the scope."""

from __future__ import annotations

import pytest
from django.utils import timezone

from governance.models import ApiKey
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

# (method, path, body, scope needed; None: any secret key)
ENDPOINTS = [
    ("get", "/api/v1/purposes", None, None),
    (
        "post",
        "/api/v1/consents",
        {"subject_id": "u", "decisions": [{"purpose": "analytics", "granted": True}]},
        "consent:write",
    ),
    ("get", "/api/v1/subjects/u/consents", None, "consent:read"),
    ("get", "/api/v1/subjects/u/history", None, "consent:read"),
    ("post", "/api/v1/subjects/u/withdrawals", {}, "consent:write"),
    ("get", "/api/v1/receipts/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "consent:read"),
    ("get", "/api/v1/retention/policies", None, "admin"),
    (
        "post",
        "/api/v1/retention/policies",
        {"name": "x", "target": "governance.AuditEvent", "keep_for": "P30D"},
        "admin",
    ),
    ("post", "/api/v1/retention/runs", {"dry_run": False}, "admin"),
    ("get", "/api/v1/retention/runs/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "admin"),
    ("post", "/api/v1/erasure-requests", {"subject_id": "u"}, "rights"),
    ("get", "/api/v1/erasure-requests/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "rights"),
    ("post", "/api/v1/access-requests", {"subject_id": "u"}, "rights"),
    ("get", "/api/v1/access-requests/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "rights"),
]
ALL_SCOPES = ["consent:write", "consent:read", "checks", "rights", "admin"]


def call(api: Api, method: str, path: str, body: dict | None):
    return api.get(path) if method == "get" else api.post(path, body)


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_no_key_is_401(purposes, method, path, body, scope):
    response = call(Api(None), method, path, body)
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_unknown_key_is_401(purposes, method, path, body, scope):
    assert_error(call(Api("sk_unknown"), method, path, body), 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_scope_matrix(purposes, make_api, method, path, body, scope):
    for held in ALL_SCOPES:
        response = call(make_api(held), method, path, body)
        if scope is None or held == scope:
            assert response.status_code < 400 or response.status_code == 404, (held, path)
        else:
            assert_error(response, 403, "permission_denied")


def test_malformed_authorization_header_is_401(purposes):
    api = Api(None)
    response = api.get("/api/v1/purposes", headers={"Authorization": "Token abc"})
    assert_error(response, 401, "not_authenticated")


def test_revoked_and_expired_keys_are_401(purposes, make_api):
    api = make_api("consent:read")
    assert api.get("/api/v1/purposes").status_code == 200
    ApiKey.objects.update(revoked_at=timezone.now())
    assert_error(api.get("/api/v1/purposes"), 401, "not_authenticated")
    ApiKey.objects.update(revoked_at=None, expires_at=timezone.now())
    assert_error(api.get("/api/v1/purposes"), 401, "not_authenticated")


def test_keys_are_stored_hashed_and_last_use_recorded(purposes, make_api):
    api = make_api("consent:read")
    api.get("/api/v1/purposes")
    stored = ApiKey.objects.get()
    assert api.key not in stored.key_hash and stored.key_hash != api.key
    assert stored.last_used_at is not None
    assert api.key.startswith("sk_") and api.key.startswith(stored.prefix)
