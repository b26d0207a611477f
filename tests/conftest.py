"""Shared fixtures: API keys, an HTTP helper, the seeded purposes and signed-in staff."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from django.test import Client

from governance import crypto
from governance.memo import memos_clear
from governance.models import StaffTotpDevice, staff_totp_aad
from tests import factories


@pytest.fixture(autouse=True)
def _fresh_memos() -> None:
    """Each test starts without another test's memoised key lookups and purposes (a flush
    or a rollback between tests sends no model signal)."""
    memos_clear()


class Api:
    """A Django test client that speaks JSON with a bearer key."""

    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.key = key

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        return self.client.get(path, params, headers=self._headers(headers))

    def post(
        self,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
    ) -> Any:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            path, data=data, content_type=content_type, headers=self._headers(headers)
        )

    def patch(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.patch(
            path,
            data=json.dumps(body),
            content_type="application/json",
            headers=self._headers(headers),
        )


@pytest.fixture
def purposes(db: None) -> dict[str, Any]:
    return factories.seed_purposes()


@pytest.fixture
def make_api() -> Any:
    def make(*scopes: str, kind: str = "secret") -> Api:
        _, key = factories.api_client(scopes=list(scopes), kind=kind)
        return Api(key)

    return make


@pytest.fixture
def api(db: None, make_api: Any, purposes: dict[str, Any]) -> Api:
    """A secret key with every scope."""
    return make_api("consent:write", "consent:read", "checks", "rights", "admin")


STAFF_PASSWORD = "password"  # pytest-django's admin_user has this one too
ADMIN_LOGIN = "/admin/login/?next=/admin/"


def totp_code(device: StaffTotpDevice, *, at: float | None = None) -> str:
    """The device's code for the time step at `at` (now by default)."""
    totp = device.totp()
    totp.time = time.time() if at is None else at
    return str(totp.token()).zfill(device.digits)


def totp_fresh_code(device: StaffTotpDevice) -> str:
    """A code the device has not accepted yet: now's, or the next step's when now's is
    used (within the one step of tolerance), as an app would show a few seconds later."""
    device.refresh_from_db()
    now = time.time()
    totp = device.totp()
    totp.time = now
    step_ahead = max(0, device.last_t + 1 - totp.t())
    assert step_ahead <= device.tolerance, "signed in too often for this time step"
    return totp_code(device, at=now + step_ahead * device.step)


def staff_sign_in(user: Any, client: Client | None = None, password: str = STAFF_PASSWORD) -> Client:
    """Signs `user` in through the admin's real form with a computed authenticator code,
    enrolling an authenticator first if the user has none. Sets `password` on the user when it is
    not already theirs."""
    client = client or Client()
    if not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    device = StaffTotpDevice.objects.filter(user=user).first()
    if device is None:
        # As enrol_totp makes it, without its audit row (tests count audit rows).
        device = StaffTotpDevice.objects.create(
            user=user,
            name="tests",
            key_encrypted=crypto.encrypt(os.urandom(20), aad=staff_totp_aad(user.pk)),
        )
    response = client.post(
        ADMIN_LOGIN,
        {"username": user.get_username(), "password": password, "otp_token": totp_fresh_code(device)},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return client


@pytest.fixture
def staff_client(db: None) -> Any:
    """`staff_client(user)`: a test client signed in as `user` with password and code."""
    return staff_sign_in


@pytest.fixture
def admin_client(db: None, admin_user: Any) -> Client:
    """pytest-django's admin_client, signed in the way the admin requires (DEBUG is off in
    the tests, so a session without an authenticator code is refused)."""
    return staff_sign_in(admin_user)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code, body
    return body


# The check stream takes NDJSON (issue 3): teach schemathesis to send a string body as is.
def _register_ndjson_serializer() -> None:
    import schemathesis

    @schemathesis.serializer("application/x-ndjson")
    def ndjson(ctx: Any, value: Any) -> bytes:
        return value.encode() if isinstance(value, str) else (json.dumps(value) + "\n").encode()


_register_ndjson_serializer()
