"""Errors of the consent domain, each with a stable code and an HTTP status."""

from governance.errors import DomainError, InvalidRequest


class UnknownPurpose(DomainError):
    code = "unknown_purpose"
    status = 400
    message = "Unknown or inactive purpose."


class NoticeVersionSuperseded(DomainError):
    code = "notice_version_superseded"
    status = 409
    message = "The notice version is not the current one for this purpose."


class DuplicatePurpose(DomainError):
    code = "duplicate_purpose"
    status = 400
    message = "A purpose appears more than once in one request."


class NonAffirmativeIndication(DomainError):
    code = "non_affirmative_indication"
    status = 422
    message = "A grant needs an affirmative indication (a button, a box ticked by the person)."


class GuardianRequired(DomainError):
    code = "guardian_required"
    status = 422
    message = "Below the age of digital consent, a parent or guardian must give the grant."


class PurposeWithoutNotice(DomainError):
    code = "purpose_without_notice"
    status = 409
    message = "This purpose has no published notice to consent to."


class UnknownDataUse(DomainError):
    code = "unknown_data_use"
    status = 400
    message = "Unknown or inactive data use."


class DataUsePurposeMismatch(DomainError):
    code = "data_use_purpose_mismatch"
    status = 400
    message = "The data use is registered for another purpose than the one checked."


class DuplicateDataUse(DomainError):
    code = "duplicate_data_use"
    status = 409
    message = "A data use with this key already exists."


class UnknownProperty(DomainError):
    code = "unknown_property"
    status = 404
    message = "This publishable key is not bound to an active property."


class OriginNotAllowed(DomainError):
    code = "origin_not_allowed"
    status = 403
    message = "This origin is not one of the property's allowed origins."


class PurposeNotShown(DomainError):
    code = "purpose_not_shown"
    status = 400
    message = "The property does not show this purpose."


class UnknownLanguage(DomainError):
    code = "unknown_language"
    status = 400
    message = "Unknown language code."


class InvalidDeviceId(DomainError):
    code = "invalid_device_id"
    status = 400
    message = "The device id was not issued by this service."


class InvalidSubjectToken(DomainError):
    code = "invalid_subject_token"
    status = 400
    message = "The subject token is malformed or was not minted by this service."


class SubjectTokenExpired(DomainError):
    code = "subject_token_expired"
    status = 400
    message = "The subject token has expired; mint a new one."


class InvalidSubjectId(InvalidRequest):
    """One code for every endpoint that takes a subject identifier (consent.identity)."""

    code = "invalid_subject_id"
    status = 400
    message = (
        "A subject id must be a non-empty string of at most 255 characters, without control "
        "characters or lone surrogates."
    )


class LineTooLong(InvalidRequest):
    code = "line_too_long"
    status = 400
    message = "A line of the NDJSON body is longer than the service accepts."


class IdentifierInUse(DomainError):
    code = "identifier_in_use"
    status = 409
    message = "The new identifier already names a subject."


class SnapshotNotReady(DomainError):
    code = "snapshot_not_ready"
    status = 409
    message = "The snapshot is not ready (still being built, failed, or expired)."


class DeniedInSnapshot(DomainError):
    code = "denied_in_snapshot"
    status = 400
    message = (
        "The upload holds pseudonyms the snapshot denies (or does not list, while absent ids "
        "are not allowed); nothing was recorded."
    )


class AlreadyRestricted(DomainError):
    code = "already_restricted"
    status = 409
    message = "Processing of this subject is already restricted: lift the open period first."


class NotRestricted(DomainError):
    code = "not_restricted"
    status = 409
    message = "Processing of this subject is not restricted: there is no open period to lift."


class InvalidAttributes(InvalidRequest):
    code = "invalid_attributes"
    message = "The attributes are not names to string values within the limits."


class InvalidSkew(InvalidRequest):
    code = "invalid_skew"
    message = "The skew report is not one the service publishes."


class DecisionNotComplete(DomainError):
    code = "decision_not_complete"
    status = 409
    message = "The decision is not complete (a stream still answering, or abandoned): no card."


class ImportInvalid(DomainError):
    code = "import_invalid"
    status = 400
    message = "The import file is invalid; nothing was imported."
