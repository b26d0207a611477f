"""Bearer-key authentication and scope checks for every API view.

A view states `required_scope` (None: any secret key) and `allow_publishable`. No key or an
unknown key is a 401; a key without the scope, or a publishable key off the banner
endpoints, is a 403.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from governance.keys import hash_key
from governance.models import ApiClient, ApiKey


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <key>'.")
        now = timezone.now()
        # Only the columns a request needs: this runs on every call, the hot single check
        # included, and each timestamp column costs a parse.
        api_key = (
            ApiKey.objects.select_related("client")
            .only(
                "id",
                "prefix",
                "last_used_at",
                "client__id",
                "client__name",
                "client__kind",
                "client__scopes",
                "client__rate_limit_per_minute",
                "client__active",
            )
            .filter(key_hash=hash_key(parts[1]), revoked_at__isnull=True, client__active=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .first()
        )
        if api_key is None:
            raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.")
        self._touch(api_key, now)
        # Which of the client's keys made this request: audit rows name it (by prefix).
        api_key.client.auth_key = api_key.prefix  # type: ignore[attr-defined]
        return api_key.client, api_key.client

    def _touch(self, api_key: ApiKey, now: Any) -> None:
        # Written at most once per interval so that reads stay reads.
        interval = timedelta(seconds=settings.API_KEY_TOUCH_INTERVAL)
        if api_key.last_used_at is None or now - api_key.last_used_at > interval:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            ApiClient.objects.filter(pk=api_key.client_id).update(last_used_at=now)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class HasScope(BasePermission):
    message = "This API key may not call this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            raise exceptions.NotAuthenticated("Send 'Authorization: Bearer <key>'.")
        if client.kind == ApiClient.Kind.PUBLISHABLE:
            return bool(getattr(view, "allow_publishable", False))
        if getattr(view, "publishable_only", False):
            return False
        scope = getattr(view, "required_scope", None)
        return scope is None or client.has_scope(scope)
