"""Signing staff in as the admin requires: password and a code from their authenticator.

The tests run with DEBUG off, so the admin refuses a session without the code step
(`force_login` alone); these helpers go through the real sign-in form with a code computed
from the device's seed. Fixtures `staff_client` and `admin_client` (tests/conftest.py) use
them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.test import Client

from governance import crypto
from governance.models import StaffTotpDevice, staff_totp_aad


def totp_device(user: Any) -> StaffTotpDevice:
    """The user's authenticator, enrolled as enrol_totp does when there is none (without
    its audit row: tests count audit rows)."""
    device = StaffTotpDevice.objects.filter(user=user).first()
    if device is None:
        device = StaffTotpDevice.objects.create(
            user=user,
            name="tests",
            key_encrypted=crypto.encrypt(os.urandom(20), aad=staff_totp_aad(user.pk)),
        )
    return device


STAFF_PASSWORD = "password"  # pytest-django's admin_user has this one too
ADMIN_LOGIN = "/admin/login/?next=/admin/"


def totp_code(device: StaffTotpDevice, *, at: float | None = None) -> str:
    """The device's code for the time step at `at` (now by default)."""
    totp = device.totp()
    totp.time = time.time() if at is None else at
    return str(totp.token()).zfill(device.digits)


def totp_fresh_code(device: StaffTotpDevice) -> str:
    """A code the device has not accepted yet: now's, or the next step's when now's is
    used (within the one step of tolerance), as an app would show a few seconds later."""
    device.refresh_from_db()
    now = time.time()
    totp = device.totp()
    totp.time = now
    step_ahead = max(0, device.last_t + 1 - totp.t())
    assert step_ahead <= device.tolerance, "signed in too often for this time step"
    return totp_code(device, at=now + step_ahead * device.step)


def staff_sign_in(
    user: Any, client: Client | None = None, password: str = STAFF_PASSWORD
) -> Client:
    """Signs `user` in through the admin's real form with a computed authenticator code,
    enrolling an authenticator first if the user has none. Sets `password` on the user
    when it is not already theirs."""
    client = client or Client()
    if not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    device = totp_device(user)
    response = client.post(
        ADMIN_LOGIN,
        {
            "username": user.get_username(),
            "password": password,
            "otp_token": totp_fresh_code(device),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return client
