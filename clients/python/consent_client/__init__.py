"""Python client for the consent service's checks and snapshots (no Django; requests and
cryptography, optional pandas and pyarrow)."""

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
from consent_client.snapshot import Snapshot, SnapshotError, SnapshotVerificationError

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
    "Snapshot",
    "SnapshotError",
    "SnapshotVerificationError",
    "SubjectCheck",
    "TransientError",
    "Unauthorized",
]
