"""Middleware of the admin's pages that the API does not run.

The JSON API under /api/v1/ authenticates by bearer key and never reads a session, a user
or a message, yet Django's session, authentication and message middleware ran on every API
request (with the message storages built each time): about a sixth of the single check's
CPU. These subclasses skip themselves on API paths and behave exactly as Django's
everywhere else (the admin, its sign-in, the docs). CSRF, security, CORS, clickjacking and
django-axes run everywhere, unchanged. django-otp's middleware, which marks a staff
session verified by its second factor, is skipped the same way.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware as _Authentication
from django.contrib.messages.middleware import MessageMiddleware as _Message
from django.contrib.sessions.middleware import SessionMiddleware as _Session
from django.http import HttpRequest
from django_otp.middleware import OTPMiddleware as _OTP

# Paths of the bearer-key API (DRF views and their lean twins): no session, user or message.
API_PREFIX = "/api/v1/"


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


class _SiteOnly:
    """Runs the middleware's request and response steps off the API's paths only."""

    get_response: Any

    def __call__(self, request: HttpRequest) -> Any:
        if is_api(request):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(_SiteOnly, _Session):
    pass


class AuthenticationMiddleware(_SiteOnly, _Authentication):
    pass


class MessageMiddleware(_SiteOnly, _Message):
    pass


class OTPMiddleware(_SiteOnly, _OTP):
    """django-otp's: `request.user.is_verified()` says the session passed the code step."""
