"""One error shape for the whole API: {"error": {"code", "message", "detail"}}.

Domain errors subclass DomainError; the DRF exception handler turns those, DRF's own
exceptions and Django's into that shape and rolls back the request's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule of the domain was broken by the request; never a bug."""

    code = "invalid_request"
    status = 400
    message = "The request is invalid."

    def __init__(self, message: str | None = None, *, detail: Any = None) -> None:
        self.message = message or self.message
        self.detail = detail
        super().__init__(self.message)


class InvalidRequest(DomainError):
    code = "invalid_request"
    status = 400


class NotFound(DomainError):
    code = "not_found"
    status = 404
    message = "Not found."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 409
    message = "This Idempotency-Key was already used with a different request (path or body)."


class TooDeeplyNested(InvalidRequest):
    """JSON nested deeper than governance.api.parsers.MAX_JSON_DEPTH: malformed JSON for
    this API, so the same code as any other (never the decoder's RecursionError, a 500)."""

    message = "Malformed JSON: nested too deeply."


class PayloadTooLarge(drf.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail}}


_DRF_CODES: list[tuple[type[drf.APIException], str]] = [
    (PayloadTooLarge, "payload_too_large"),
    (drf.ParseError, "invalid_request"),
    (drf.ValidationError, "invalid_request"),
    (drf.NotAuthenticated, "not_authenticated"),
    (drf.AuthenticationFailed, "not_authenticated"),
    (drf.PermissionDenied, "permission_denied"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
    (drf.UnsupportedMediaType, "unsupported_media_type"),
    (drf.Throttled, "rate_limited"),
]


def _drf_message(exc: drf.APIException) -> str:
    if isinstance(exc, drf.ValidationError):
        return "The request body is invalid."
    detail = exc.detail
    if isinstance(detail, list | dict):
        return str(exc.default_detail)
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, DomainError):
        status, body = exc.status, error_body(exc.code, exc.message, exc.detail)
    elif isinstance(exc, RequestDataTooBig):
        status, body = 413, error_body("payload_too_large", "The request body is too large.")
    elif isinstance(exc, Http404):
        status, body = 404, error_body("not_found", "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        status, body = 403, error_body("permission_denied", "Permission denied.")
    elif isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "invalid_request")
        detail = exc.detail if isinstance(exc, drf.ValidationError) else None
        status, body = exc.status_code, error_body(code, _drf_message(exc), detail)
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(max(1, int(wait + 0.999)))
    else:
        return None
    # Imported here: rest_framework.views reads the parser settings, which import this module.
    from rest_framework.views import set_rollback

    set_rollback()
    return Response(body, status=status, headers=headers)


# Django-level handlers, for URLs no DRF view answers.


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def handler500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "The server failed to answer; the error was logged."),
        status=500,
    )


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("invalid_request", "Bad request."), status=400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Staff refused a page of the admin (a permission their role lacks) get a page, not the
    # API's JSON; everywhere else the error shape.
    if request.path.startswith(reverse("admin:index")):
        return defaults.permission_denied(request, exception or DjangoPermissionDenied())
    return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)
