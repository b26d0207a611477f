"""Showing a subject's identifier to staff: decrypted on demand, never cached."""

from __future__ import annotations

from consent import identity
from consent.models import Subject
from governance.crypto import DecryptionFailed


def identifier_or_erased(subject: Subject) -> str:
    if subject.identifier_encrypted is None:
        return "(erased)" if subject.erased_at else "(none)"
    try:
        return identity.decrypt_identifier(subject.identifier_encrypted, key=subject.key) or ""
    except DecryptionFailed:
        return "(cannot decrypt: encryption key not configured)"
