"""Shared fixtures: API keys, an HTTP helper, the seeded purposes and signed-in staff."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from governance.memo import memos_clear
from tests import factories
from tests.staff import staff_sign_in


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
