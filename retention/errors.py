"""Errors of the retention domain, each with a stable code and an HTTP status."""

from governance.errors import DomainError


class UnknownTarget(DomainError):
    code = "unknown_target"
    status = 400
    message = "No registered retention target has this name."


class InvalidDuration(DomainError):
    code = "invalid_duration"
    status = 400
    message = "keep_for must be a positive duration (ISO 8601, e.g. P30D)."


class InvalidCondition(DomainError):
    code = "invalid_condition"
    status = 400
    message = "The condition names a field the target does not have, or cannot be applied."


class InvalidPolicy(DomainError):
    code = "invalid_policy"
    status = 400
    message = "The policy is invalid."


class DuplicatePolicy(DomainError):
    code = "duplicate_policy"
    status = 409
    message = "A policy with this name exists."


class RetentionBelowMinimum(DomainError):
    code = "retention_below_minimum"
    status = 400
    message = (
        "This target holds accountability records: no policy may keep them for less than the "
        "minimum (RETENTION_MINIMUM_ACCOUNTABILITY_DAYS)."
    )


class RequestAlreadyExtended(DomainError):
    code = "request_already_extended"
    status = 409
    message = "This request's due date was already extended (GDPR Art. 12(3) allows it once)."


class LeaseLost(Exception):
    """Another enforcement took the lease (ours expired): stop at once, commit nothing more."""
