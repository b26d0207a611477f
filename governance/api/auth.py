"""Bearer-key authentication and scope checks for every API view.

A view states `required_scope` (None: any secret key; a tuple: any one of those scopes) and
`allow_publishable`. No key or an unknown key is a 401; a key without the scope, or a
publishable key off the banner endpoints, is a 403.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from governance import db
from governance.keys import hash_key
from governance.memo import Memo, memos_version, unix_time
from governance.models import ApiClient, ApiKey


def bearer_key(header: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header; None when it has another form."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def client_for_key(key: str) -> ApiClient | None:
    """The active client a valid key belongs to, with the key's use recorded (at most once
    per API_KEY_TOUCH_INTERVAL, so that reads stay reads); None for an unknown, revoked or
    expired key."""
    now = timezone.now()
    found = _key_lookup(hash_key(key), now)
    if found is None:
        return None
    client, key_id, prefix, stale = found
    if stale:
        ApiKey.objects.filter(pk=key_id).update(last_used_at=now)
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
    # Which of the client's keys made this request: audit rows name it (by prefix).
    client.auth_key = prefix  # type: ignore[attr-defined]
    return client


def scope_allows(client: ApiClient, view: Any) -> bool:
    """Whether the client may call the view (a view instance or class): publishable keys
    only the banner endpoints, secret keys the endpoints whose scope they hold."""
    if client.kind == ApiClient.Kind.PUBLISHABLE:
        return bool(getattr(view, "allow_publishable", False))
    if getattr(view, "publishable_only", False):
        return False
    scope = getattr(view, "required_scope", None)
    if scope is None:
        return True
    scopes = (scope,) if isinstance(scope, str) else scope
    return any(client.has_scope(s) for s in scopes)


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        key = bearer_key(header)
        if key is None:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <key>'.")
        client = client_for_key(key)
        if client is None:
            raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class HasScope(BasePermission):
    message = "This API key may not call this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            raise exceptions.NotAuthenticated("Send 'Authorization: Bearer <key>'.")
        return scope_allows(client, view)


# Every API request runs this, the hot single check included, so it is one plain SQL
# statement (the ORM's query building cost several times the query itself here), and its
# answer is memoised for a second (governance.memo) until the key's own expiry.
_KEY_LOOKUP = """
SELECT k.id, k.prefix, c.id, c.name, c.kind, c.scopes, c.rate_limit_per_minute,
       k.expires_at,
       CASE WHEN k.last_used_at IS NULL OR k.last_used_at < %s THEN 1 ELSE 0 END
FROM governance_apikey k JOIN governance_apiclient c ON c.id = k.client_id
WHERE k.key_hash = %s AND k.revoked_at IS NULL AND c.active
  AND (k.expires_at IS NULL OR k.expires_at > %s)
"""
_KEYS = Memo()


def _key_lookup(key_hash: str, now: datetime) -> tuple[ApiClient, int, str, bool] | None:
    """The key's client, key id and prefix, and whether its last use is due to be written."""
    version = memos_version()
    row, stale = _KEYS.get(key_hash, at=now.timestamp()), False
    if row is None:
        found = _key_row(key_hash, now)
        if found is None:
            return None  # unknown keys are not memoised: a key issued now works at once
        *row, expires_at, stale = found
        until = unix_time(expires_at)
        _KEYS.put(key_hash, row, version=version, at=now.timestamp(), until=until)
    key_id, prefix, client_id, name, kind, scopes, rate_limit = row
    if isinstance(scopes, str | bytes):
        scopes = json.loads(scopes)
    # A model instance as the ORM would load it, the columns not read here deferred (they
    # load on access, and save() never writes them back from stale values). A new one per
    # request: the memo keeps the row, never an instance a request could change.
    client = ApiClient.from_db(
        connection.alias,
        ["id", "name", "kind", "scopes", "rate_limit_per_minute", "active"],
        [client_id, name, kind, list(scopes or []), rate_limit, True],
    )
    return client, key_id, prefix, bool(stale)


def _key_row(key_hash: str, now: datetime) -> tuple[Any, ...] | None:
    touch_before = now - timedelta(seconds=settings.API_KEY_TOUCH_INTERVAL)
    return db.fetchone_fixed()(_KEY_LOOKUP, [touch_before, key_hash, now])
