"""Middleware of the admin's pages that the API does not run, and the one that observes
every request (its id, its metrics) and serves /metrics.

The JSON API under /api/v1/ authenticates by bearer key and never reads a session, a user
or a message, yet Django's session, authentication and message middleware ran on every API
request (with the message storages built each time): about a sixth of the single check's
CPU. These subclasses skip themselves on API paths and behave exactly as Django's
everywhere else (the admin, its sign-in, the docs). CSRF, security, CORS, clickjacking and
django-axes run everywhere, unchanged. django-otp's middleware, which marks a staff
session verified by its second factor, is skipped the same way.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware as _Authentication
from django.contrib.messages.middleware import MessageMiddleware as _Message
from django.contrib.sessions.middleware import SessionMiddleware as _Session
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_otp.middleware import OTPMiddleware as _OTP

from governance.errors import error_body
from governance.logging import (
    REQUEST_ID_HEADER,
    request_id_for,
    request_id_set,
)
from governance.metrics import (
    FORBIDDEN_MESSAGE,
    HTTP_DURATION,
    HTTP_REQUESTS,
    UNMATCHED,
    scrape,
    scrape_allowed,
)
from governance.net import client_ip

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


class RequestObservationMiddleware:
    """First of the middleware: gives the request its id (kept from a sane X-Request-ID,
    else new; in the logs, the response header and the tasks the request queues), counts
    and times it by route (the URL pattern's name, never the path, which may hold an
    identifier; "unmatched" when no named pattern matched), and answers GET /metrics itself
    (governance.metrics decides who may), so a scrape runs no session, host or https rule.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        start = time.perf_counter()
        request_id = request_id_for(request.META.get("HTTP_X_REQUEST_ID"))
        # Kept until the response is closed (request_finished clears it), so Django's own
        # log of a 4xx or 5xx, written after the middleware, and a streamed body's logs
        # carry it too.
        request_id_set(request_id)
        if request.path_info == METRICS_PATH:
            response = metrics_response(request)
            route = "metrics"
        else:
            response = self.get_response(request)
            match = getattr(request, "resolver_match", None)
            route = match.view_name if match is not None and match.url_name else UNMATCHED
        response[REQUEST_ID_HEADER] = request_id
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        HTTP_DURATION.labels(route, method).observe(time.perf_counter() - start)
        return response


METRICS_PATH = "/metrics"
# Methods counted by name; anything else a client invents is "other" (a bounded label).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def metrics_response(request: HttpRequest) -> HttpResponse:
    """The scrape, to a caller that scrape_allowed lets in; else 403 in the error shape."""
    if request.method not in ("GET", "HEAD"):
        response: HttpResponse = JsonResponse(
            error_body("method_not_allowed", f"Method {request.method} not allowed."), status=405
        )
        response["Allow"] = "GET, HEAD"
        return response
    allowed = scrape_allowed(
        peer=request.META.get("REMOTE_ADDR", "") or "",
        client=client_ip(request),
        authorization=request.META.get("HTTP_AUTHORIZATION", "") or "",
    )
    if not allowed:
        return JsonResponse(error_body("permission_denied", FORBIDDEN_MESSAGE), status=403)
    body, content_type = scrape()
    return HttpResponse(body, content_type=content_type)
