"""Typed errors: one class per 4xx the service answers, plus transient and server failures."""

from __future__ import annotations

from typing import Any


class ConsentApiError(Exception):
    """The service answered with an error, in its shape {"error": {code, message, detail}}."""

    status: int = 0

    def __init__(
        self, message: str, *, status: int = 0, code: str = "", detail: Any = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status or self.status
        self.code = code
        self.message = message
        self.detail = detail


class BadRequest(ConsentApiError):
    status = 400


class Unauthorized(ConsentApiError):
    status = 401


class Forbidden(ConsentApiError):
    status = 403


class NotFound(ConsentApiError):
    status = 404


class Conflict(ConsentApiError):
    status = 409


class PayloadTooLarge(ConsentApiError):
    status = 413


class TransientError(ConsentApiError):
    """Still failing after every retry: connection errors, timeouts, 429, 502, 503, 504."""


class RateLimited(TransientError):
    status = 429


class ServerError(ConsentApiError):
    """A 5xx that is not transient (a bug on the server): not retried."""


BY_STATUS: dict[int, type[ConsentApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
}


def error_for(status: int, body: Any) -> ConsentApiError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": "", "message": str(body)[:500], "detail": None}
    if status >= 500:
        cls: type[ConsentApiError] = TransientError if status in (502, 503, 504) else ServerError
    else:
        cls = BY_STATUS.get(status, ConsentApiError)
    return cls(
        str(error.get("message", "")),
        status=status,
        code=str(error.get("code", "")),
        detail=error.get("detail"),
    )
