"""Staff sign-in throttling (django-axes): per username and client address, no raw IP kept.
A right password still needs the authenticator code (tests/staff.py computes it)."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, override_settings

from governance.audit import hash_ip
from tests.staff import totp_device, totp_fresh_code

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PROXY = "10.0.0.2"  # nginx, as gunicorn sees it


@pytest.fixture
def staff_user() -> User:
    user = User.objects.create_superuser("dpo", "dpo@example.com", "the-right-password")
    totp_device(user)
    return user


def _sign_in(client_address: str, password: str, username: str = "dpo"):
    # Behind one trusted proxy: the client is the last X-Forwarded-For entry.
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"192.0.2.99, {client_address}")
    code = totp_fresh_code(totp_device(User.objects.get(username=username)))
    return client.post(LOGIN, {"username": username, "password": password, "otp_token": code})


def _fail_until_locked(client_address: str) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client_address, "wrong").status_code == 200  # the form again
    # The failure that reaches the limit is answered with the lockout.
    assert _sign_in(client_address, "wrong").status_code == 429


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_failed_sign_ins_lock_that_username_from_that_client_address(staff_user):
    _fail_until_locked("198.51.100.7")
    # Locked even with the right password, until the cool-off passes.
    assert _sign_in("198.51.100.7", "the-right-password").status_code == 429


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_the_same_username_from_another_client_behind_the_same_proxy_can_sign_in(staff_user):
    _fail_until_locked("198.51.100.7")
    response = _sign_in("198.51.100.8", "the-right-password")
    assert response.status_code == 302 and response["Location"] == "/admin/"


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_another_username_from_the_locked_address_can_sign_in(staff_user):
    totp_device(User.objects.create_superuser("ops", "ops@example.com", "another-password"))
    _fail_until_locked("198.51.100.7")
    assert _sign_in("198.51.100.7", "another-password", username="ops").status_code == 302


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_stored_sign_in_attempts_hold_no_raw_ip(staff_user):
    _fail_until_locked("198.51.100.7")
    assert _sign_in("198.51.100.8", "the-right-password").status_code == 302
    attempt = AccessAttempt.objects.get()
    assert attempt.username == "dpo" and attempt.failures_since_start > 0
    # The audit's keyed hash of the client's address, shaped as a unique-local IPv6 address.
    assert attempt.ip_address.startswith("fd")
    assert attempt.ip_address.replace(":", "")[2:] == hash_ip("198.51.100.7")[:30]
    # Successful sign-ins and failures are not logged one by one.
    assert not AccessLog.objects.exists() and not AccessFailureLog.objects.exists()
    # No axes table holds any of the addresses, in any column.
    with connection.cursor() as cursor:
        for table in ("axes_accessattempt", "axes_accesslog", "axes_accessfailurelog"):
            cursor.execute(f"SELECT * FROM {table}")
            dump = repr(cursor.fetchall())
            for address in ("198.51.100.7", "198.51.100.8", "192.0.2.99", PROXY):
                assert address not in dump, (table, address)
