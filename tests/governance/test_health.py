"""Liveness and readiness, and the error shape for URLs no view answers."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from governance.celery import app as celery_app
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_healthz_answers_without_a_key():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_database_cache_and_broker():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


def test_readyz_names_a_broker_that_is_down(monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", DEAD_REDIS)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]


def test_readyz_names_a_cache_that_is_down():
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    with override_settings(CACHES=caches):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]


def test_unknown_url_is_a_json_404():
    assert_error(Client().get("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_a_json_405(api):
    assert_error(
        api.client.delete("/api/v1/consents", headers={"Authorization": f"Bearer {api.key}"}),
        405,
        "method_not_allowed",
    )


def test_openapi_schema_and_docs_are_served():
    schema = Client().get("/api/schema/", headers={"Accept": "application/json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/consents", "/api/v1/purposes", "/api/v1/receipts/{receipt_id}"):
        assert path in paths
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
