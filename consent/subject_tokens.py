"""Short-lived subject tokens: a product back end mints one for a logged-in person so that
the banner's choice lands on their real subject.

A token is AES-GCM (authenticated encryption under the subject-encryption keyring) of the
subject id and an expiry: it cannot be forged or altered, and unlike a merely signed token it
does not show the identifier to the browser or to anything that logs it.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from consent.errors import InvalidSubjectToken, SubjectTokenExpired
from consent.identity import validate_identifier
from governance import crypto

TOKEN_PREFIX = "st_"  # noqa: S105 (a prefix, not a secret)
_AAD = b"consent.subject-token.v1"
MAX_TOKEN_LENGTH = 2048


def subject_token_mint(*, subject_id: str, now: datetime | None = None) -> tuple[str, datetime]:
    validate_identifier(subject_id)
    moment = now or timezone.now()
    expires_at = (moment + timedelta(seconds=settings.SUBJECT_TOKEN_TTL_SECONDS)).replace(
        microsecond=0
    )
    payload = json.dumps({"sub": subject_id, "exp": int(expires_at.timestamp())}).encode()
    blob = crypto.encrypt(payload, aad=_AAD)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("="), expires_at


def subject_token_verify(token: str, *, now: datetime | None = None) -> str:
    """The subject id a token carries; refuses forged, altered and expired tokens."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        raise InvalidSubjectToken()
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidSubjectToken()
    raw = token[len(TOKEN_PREFIX) :]
    try:
        blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        payload = json.loads(crypto.decrypt(blob, aad=_AAD))
        subject_id, expires = payload["sub"], int(payload["exp"])
    except (binascii.Error, ValueError, KeyError, TypeError, crypto.DecryptionFailed) as exc:
        raise InvalidSubjectToken() from exc
    moment = now or timezone.now()
    if expires <= moment.timestamp():
        raise SubjectTokenExpired()
    return str(subject_id)
