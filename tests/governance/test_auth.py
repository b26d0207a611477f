"""Keys and scopes: 401 without a valid key, 403 without the scope."""

from __future__ import annotations

import pytest
from django.utils import timezone

from governance.models import ApiKey
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

# Endpoints only publishable keys (pk_...) may call, from their property's origin.
BANNER = "banner"
ORIGIN = "https://shop.example"


def _link_body() -> dict:
    from consent.banner.services import device_id_new
    from consent.subject_tokens import subject_token_mint

    return {"device_id": device_id_new(), "subject_token": subject_token_mint(subject_id="u")[0]}


# Decisions are read with `checks` (one's own) or `admin` (everyone's): either scope will do.
DECISIONS = ("checks", "admin")

# (method, path, body or a callable making it, scope needed; None: any secret key; a tuple:
# any one of those scopes)
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
    # Checks, data uses and decisions (issue 3).
    ("post", "/api/v1/checks", {"purpose": "analytics", "subject_ids": ["u"]}, "checks"),
    ("post", "/api/v1/checks/stream?purpose=analytics", {"subject_id": "u"}, "checks"),
    ("get", "/api/v1/subjects/u/checks/analytics", None, "checks"),
    ("get", "/api/v1/subjects/u/decisions", None, DECISIONS),
    ("get", "/api/v1/data-uses", None, "checks"),
    (
        "post",
        "/api/v1/data-uses",
        {"key": "scope-test", "name": "Scope test", "purpose": "analytics"},
        "checks",
    ),
    ("get", "/api/v1/data-uses/export?format=csv", None, "checks"),
    ("get", "/api/v1/decisions/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, DECISIONS),
    ("get", "/api/v1/decisions/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e/drift", None, DECISIONS),
    ("post", "/api/v1/webhooks", {"url": "https://hooks.example.com/x"}, "admin"),
    # Imports and exports (issue 16).
    ("get", "/api/v1/subjects/u/records?format=jsonld", None, "consent:read"),
    (
        "post",
        "/api/v1/imports",
        [
            {
                "subject_id": "u",
                "purpose": "analytics",
                "granted": True,
                "effective_at": "2026-01-01T00:00:00+00:00",
                "external_id": "scope-1",
            }
        ],
        "admin",
    ),
    ("get", "/api/v1/imports/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "admin"),
    ("post", "/api/v1/subject-tokens", {"subject_id": "u"}, "consent:write"),
    ("get", "/api/v1/banner/config", None, BANNER),
    (
        "post",
        "/api/v1/banner/consents",
        {"decisions": [{"purpose": "analytics", "granted": True}]},
        BANNER,
    ),
    ("post", "/api/v1/banner/link", _link_body, BANNER),
    ("get", "/api/v1/retention/policies", None, "admin"),
    (
        "post",
        "/api/v1/retention/policies",
        {"name": "x", "target": "governance.IdempotencyRecord", "keep_for": "P30D"},
        "admin",
    ),
    ("post", "/api/v1/retention/runs", {"dry_run": False}, "admin"),
    ("get", "/api/v1/retention/runs/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "admin"),
    ("post", "/api/v1/erasure-requests", {"subject_id": "u"}, "rights"),
    ("get", "/api/v1/erasure-requests/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "rights"),
    ("post", "/api/v1/access-requests", {"subject_id": "u"}, "rights"),
    ("get", "/api/v1/subjects/u/restriction", None, "rights"),
    ("post", "/api/v1/subjects/u/restriction", {"reason": "disputed"}, "rights"),
    ("get", "/api/v1/access-requests/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e", None, "rights"),
]
ALL_SCOPES = ["consent:write", "consent:read", "checks", "rights", "admin"]


def _secret_key(make_api, held: str) -> Api:
    return make_api(held)


def _publishable_key(make_api, held: str) -> Api:
    from consent.banner.services import property_create
    from consent.models import Purpose
    from governance.actors import Actor

    _, key = property_create(
        name=f"property-{held}",
        allowed_origins=[ORIGIN],
        purposes=list(Purpose.objects.all()),
        actor=Actor.system("test"),
    )
    return Api(key)


# Each kind of key: how to make one holding a scope, the scopes to try, and whether it may
# call an endpoint that needs `need`. A new kind of key joins the matrix with one line.
KEY_KINDS = [
    (
        "secret",
        _secret_key,
        ALL_SCOPES,
        lambda need, held: need is None or held in (need if isinstance(need, tuple) else (need,)),
    ),
    ("publishable", _publishable_key, ["-"], lambda need, held: need == BANNER),
]


def call(api: Api, method: str, path: str, body):
    headers = {"Origin": ORIGIN}
    if callable(body):
        body = body()
    return api.get(path, headers=headers) if method == "get" else api.post(path, body, headers)


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_no_key_is_401(purposes, method, path, body, scope):
    response = call(Api(None), method, path, body)
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_unknown_key_is_401(purposes, method, path, body, scope):
    assert_error(call(Api("sk_unknown"), method, path, body), 401, "not_authenticated")


@pytest.mark.parametrize(("kind", "make_key", "held_scopes", "may_call"), KEY_KINDS)
@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_scope_matrix(
    purposes, make_api, method, path, body, scope, kind, make_key, held_scopes, may_call
):
    from django.core.cache import cache

    cache.clear()  # the banner endpoints' per-IP limit must not interfere
    for held in held_scopes:
        response = call(make_key(make_api, held), method, path, body)
        if may_call(scope, held):
            assert response.status_code < 400 or response.status_code == 404, (kind, held, path)
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
