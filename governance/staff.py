"""Staff two-factor sign-in: enrolling an authenticator app and checking its codes.

A staff member signs in to the admin with a password and a six-digit code from an
authenticator app (TOTP). Enrolment is an operator's act on the server
(`python manage.py enrol_totp USERNAME`), never a page reachable with a password alone: a
stolen password must not be enough to enrol the thief's own authenticator.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import transaction

from governance import crypto
from governance.actors import Actor
from governance.audit import audit_record
from governance.models import StaffTotpDevice, staff_totp_aad

SEED_BYTES = 20  # 160 bits, RFC 4226's recommendation for HMAC-SHA1


@dataclass(frozen=True)
class Enrolment:
    device: StaffTotpDevice
    secret: str  # base32, for typing into an app by hand
    uri: str  # otpauth://, for a QR code or an app that takes links


class TotpRefused(Exception):
    """The code step of a sign-in failed; `code` says why (for the form's message)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def otpauth_uri(*, username: str, seed: bytes, digits: int = 6, step: int = 30) -> str:
    """The key-URI format authenticator apps read (Google Authenticator's wiki)."""
    issuer = settings.STAFF_TOTP_ISSUER.replace(":", "")
    params = urlencode(
        {
            "secret": base64.b32encode(seed).decode(),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": digits,
            "period": step,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{quote(f'{issuer}:{username}')}?{params}"


def staff_totp_enrol(*, user: Any, actor: Actor, name: str = "authenticator") -> Enrolment:
    """Gives `user` a new authenticator seed, replacing any earlier one (which stops
    working at once). The seed is returned to show once and stored only encrypted."""
    seed = os.urandom(SEED_BYTES)
    with transaction.atomic():
        replaced = StaffTotpDevice.objects.filter(user=user).delete()[0] > 0
        device = StaffTotpDevice.objects.create(
            user=user,
            name=name,
            confirmed=True,
            key_encrypted=crypto.encrypt(seed, aad=staff_totp_aad(user.pk)),
        )
        audit_record(
            actor=actor,
            action="staff.totp_enrol",
            target_type="auth.user",
            target_id=str(user.pk),
            detail={"username": user.get_username(), "replaced": replaced},
        )
    return Enrolment(
        device=device,
        secret=base64.b32encode(seed).decode(),
        uri=otpauth_uri(username=user.get_username(), seed=seed),
    )


def staff_totp_verify(*, user: Any, token: str) -> StaffTotpDevice | None:
    """The user's device when `token` is its current code (each code works once).

    None when the user has no device and STAFF_OTP_REQUIRED is off; otherwise raises
    TotpRefused. Failures are recorded on the device (its back-off), so the refusal is
    raised after the transaction commits them.
    """
    refused = ""
    with transaction.atomic():
        device = StaffTotpDevice.objects.select_for_update().filter(user=user).first()
        if device is None:
            if settings.STAFF_OTP_REQUIRED:
                refused = "not_enrolled"
        elif not token:
            refused = "missing"
        elif not device.verify_is_allowed()[0]:
            refused = "throttled"
        elif not device.verify_token(token):
            refused = "invalid"
    if refused:
        raise TotpRefused(refused)
    return device


def staff_session_verified(request: Any) -> bool:
    """Whether this signed-in session may use the admin: it passed the code step, or codes
    are not required here (DEBUG without STAFF_OTP_REQUIRED)."""
    return bool(request.user.is_verified()) or not settings.STAFF_OTP_REQUIRED
