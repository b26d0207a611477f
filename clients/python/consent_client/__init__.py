"""Python client for the consent service's checks (no Django; requests, optional pandas)."""

from consent_client.client import CheckResult, ConsentClient, SubjectCheck
from consent_client.errors import (
    BadRequest,
    Conflict,
    ConsentApiError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TransientError,
    Unauthorized,
)

__all__ = [
    "BadRequest",
    "CheckResult",
    "Conflict",
    "ConsentApiError",
    "ConsentClient",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "SubjectCheck",
    "TransientError",
    "Unauthorized",
]
