"""API key hygiene (rotation, expiry, last use) and rate limits (per client, per IP)."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from consent.api.views import PurposeListApi
from governance import ratelimit, services
from governance.models import ApiClient, ApiKey, AuditEvent
from tests import factories
from tests.conftest import Api, assert_error
from tests.live import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen_clock(monkeypatch):
    # A minute of our own: no window boundary mid-test, no bucket left by an earlier run.
    moment = 1_900_000_000.0 + random.randint(0, 10**6) * 60
    monkeypatch.setattr(ratelimit, "_clock", lambda: moment)
    return moment


def _client(name: str = "pipeline", **kwargs) -> tuple[ApiClient, str]:
    return services.api_client_create(name=name, scopes=["consent:read"], **kwargs)


# --- rotation ---------------------------------------------------------------------------


def test_rotated_keys_both_work_until_the_old_one_is_revoked(purposes):
    client, old = _client()
    new = services.api_key_rotate(client=client)
    assert Api(old).get("/api/v1/purposes").status_code == 200
    assert Api(new).get("/api/v1/purposes").status_code == 200
    assert services.api_keys_revoke_all_but_newest(client=client) == 1
    assert_error(Api(old).get("/api/v1/purposes"), 401, "not_authenticated")
    assert Api(new).get("/api/v1/purposes").status_code == 200
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1
    assert AuditEvent.objects.filter(action="api_key.issue").count() == 2


def test_rotation_with_a_grace_period_expires_the_old_key(purposes):
    client, old = _client()
    soon = timezone.now() + timedelta(hours=1)
    new = services.api_key_rotate(client=client, old_keys_expire_at=soon)
    old_row, new_row = ApiKey.objects.order_by("pk")
    assert old_row.expires_at == soon and new_row.expires_at is None
    assert Api(old).get("/api/v1/purposes").status_code == 200
    ApiKey.objects.filter(pk=old_row.pk).update(expires_at=timezone.now())
    assert_error(Api(old).get("/api/v1/purposes"), 401, "not_authenticated")
    assert Api(new).get("/api/v1/purposes").status_code == 200


def test_last_use_is_recorded_per_key(purposes):
    client, old = _client()
    new = services.api_key_rotate(client=client)
    Api(new).get("/api/v1/purposes")
    old_row, new_row = ApiKey.objects.order_by("pk")
    assert old_row.last_used_at is None and new_row.last_used_at is not None
    assert old not in (old_row.key_hash, new_row.key_hash)


def test_rotate_api_key_command(purposes):
    _, old = _client()
    out = StringIO()
    call_command("rotate_api_key", "--name", "pipeline", "--old-expire-hours", "24", stdout=out)
    new = out.getvalue().strip()
    assert new.startswith("sk_") and new != old
    assert Api(new).get("/api/v1/purposes").status_code == 200
    assert Api(old).get("/api/v1/purposes").status_code == 200
    call_command("rotate_api_key", "--name", "pipeline", "--revoke-old", stdout=StringIO())
    assert_error(Api(old).get("/api/v1/purposes"), 401, "not_authenticated")
    assert Api(new).get("/api/v1/purposes").status_code == 200


def test_admin_rotation_actions_are_audited(purposes, staff_client):
    client, old = _client()
    staff = staff_client(User.objects.create_superuser("dpo", "d@example.com", "pw"))
    changelist = "/admin/governance/apiclient/"
    staff.post(changelist, {"action": "issue_new_key", "_selected_action": [client.pk]})
    assert client.keys.count() == 2
    staff.post(changelist, {"action": "revoke_old_keys", "_selected_action": [client.pk]})
    assert_error(Api(old).get("/api/v1/purposes"), 401, "not_authenticated")
    rows = AuditEvent.objects.filter(actor_label="dpo").values_list("action", flat=True)
    assert set(rows) == {"api_key.issue", "api_key.revoke"}


# --- rate limits ------------------------------------------------------------------------


def test_per_client_limit_answers_429_with_retry_after(purposes, frozen_clock):
    _, limited = _client(rate_limit_per_minute=2)
    _, other = _client("other")
    api = Api(limited)
    assert [api.get("/api/v1/purposes").status_code for _ in range(2)] == [200, 200]
    response = api.get("/api/v1/purposes")
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    # Another client, and another window, are not affected.
    assert Api(other).get("/api/v1/purposes").status_code == 200


def test_all_keys_of_a_client_share_its_limit(purposes, frozen_clock):
    client, old = _client(rate_limit_per_minute=2)
    new = services.api_key_rotate(client=client)
    assert Api(old).get("/api/v1/purposes").status_code == 200
    assert Api(new).get("/api/v1/purposes").status_code == 200
    assert_error(Api(new).get("/api/v1/purposes"), 429, "rate_limited")


def test_per_ip_limit_for_endpoints_that_declare_one(purposes, frozen_clock, monkeypatch, settings):
    monkeypatch.setattr(PurposeListApi, "ip_rate_limit_per_minute", 2, raising=False)
    settings.TRUSTED_PROXY_COUNT = 1
    keys = [factories.api_client(scopes=["consent:read"])[1] for _ in range(3)]

    def get(key: str, ip: str):
        # The leftmost entry is the client's to forge; the one proxy appended the real one.
        forged = f"203.0.113.{random.randint(1, 254)}"
        return Api(key).get("/api/v1/purposes", headers={"X-Forwarded-For": f"{forged}, {ip}"})

    assert get(keys[0], "198.51.100.7").status_code == 200
    assert get(keys[1], "198.51.100.7").status_code == 200
    response = get(keys[2], "198.51.100.7")
    assert_error(response, 429, "rate_limited")
    assert "Retry-After" in response.headers
    assert get(keys[2], "198.51.100.8").status_code == 200


def test_redis_down_keeps_answering_without_limits_and_logs_it(purposes, settings, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    _, key = _client(rate_limit_per_minute=1)
    with caplog.at_level(logging.WARNING, logger="governance.ratelimit"):
        statuses = [Api(key).get("/api/v1/purposes").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert "rate limiting disabled: cache unavailable" in caplog.text
