"""Staff two-factor sign-in: password and a code from an authenticator app (TOTP), required
with DEBUG off (as here); the seed encrypted at rest and covered by key rotation."""

from __future__ import annotations

import base64
from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings

from governance import crypto
from governance.actors import Actor
from governance.models import AuditEvent, StaffTotpDevice, staff_totp_aad
from governance.reencrypt import encrypted_fields, encrypted_fields_unregistered, reencrypt_field
from governance.staff import staff_totp_enrol
from tests.staff import ADMIN_LOGIN, totp_code, totp_device, totp_fresh_code

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password"


@pytest.fixture
def dpo() -> User:
    user = User.objects.create_superuser("dpo", "dpo@example.com", PASSWORD)
    totp_device(user)
    return user


def _sign_in(code: str | None, password: str = PASSWORD, client: Client | None = None):
    client = client or Client()
    form = {"username": "dpo", "password": password}
    if code is not None:
        form["otp_token"] = code
    return client, client.post(ADMIN_LOGIN, form)


def test_sign_in_needs_the_password_and_a_current_code(dpo):
    client, response = _sign_in(None)
    assert response.status_code == 200
    assert "Enter the six-digit code" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # not signed in

    client, response = _sign_in(totp_fresh_code(totp_device(dpo)))
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_an_empty_password_is_asked_for_before_any_code(dpo):
    _, response = _sign_in("123456", password="")
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert "authenticator" not in response.context["form"].errors.as_text()


def test_a_wrong_code_is_refused_and_counts_toward_the_lockout(dpo):
    right = totp_code(totp_device(dpo))
    wrong = str((int(right) + 1) % 1_000_000).zfill(6)
    client, response = _sign_in(wrong)
    assert response.status_code == 200 and "wrong or was already used" in response.content.decode()
    assert client.get("/admin/").status_code == 302
    # Counted by django-axes like a wrong password, and by the device's own back-off.
    assert AccessAttempt.objects.get(username="dpo").failures_since_start == 1
    assert StaffTotpDevice.objects.get(user=dpo).throttling_failure_count == 1


def test_a_code_works_once(dpo):
    code = totp_fresh_code(totp_device(dpo))
    assert _sign_in(code)[1].status_code == 302
    client, replayed = _sign_in(code)
    assert replayed.status_code == 200 and "already used" in replayed.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_session_that_skipped_the_code_step_is_refused(dpo):
    client = Client()
    client.force_login(dpo)  # a password-only session, as before two-factor sign-in
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/governance/auditevent/").status_code == 302


def test_staff_without_an_authenticator_cannot_sign_in_with_debug_off():
    User.objects.create_superuser("dpo", "dpo@example.com", PASSWORD)
    client, response = _sign_in("123456")
    assert response.status_code == 200 and "enrol_totp" in response.content.decode()
    assert client.get("/admin/").status_code == 302


@override_settings(STAFF_OTP_REQUIRED=False)
def test_when_codes_are_not_required_a_password_suffices_until_enrolment():
    # DEBUG without STAFF_OTP_REQUIRED (make run, before the demo admin enrols).
    user = User.objects.create_superuser("dpo", "dpo@example.com", PASSWORD)
    client, response = _sign_in(None)
    assert response.status_code == 302 and client.get("/admin/").status_code == 200
    totp_device(user)  # once enrolled, the code is asked for
    assert _sign_in(None)[1].status_code == 200


def test_the_seed_is_stored_only_encrypted():
    user = User.objects.create_superuser("dpo", "dpo@example.com", PASSWORD)
    enrolment = staff_totp_enrol(user=user, actor=Actor.system("test"))
    seed = base64.b32decode(enrolment.secret)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM governance_stafftotpdevice")
        row = cursor.fetchone()
    dump = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
    for form in (seed, seed.hex().encode(), enrolment.secret.encode()):
        assert form not in dump
    stored = bytes(StaffTotpDevice.objects.get(user=user).key_encrypted)
    assert crypto.decrypt(stored, aad=staff_totp_aad(user.pk)) == seed
    # Bound to its user: the same ciphertext on another user's row does not open.
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(stored, aad=staff_totp_aad(user.pk + 1))


def test_key_rotation_reencrypts_the_seed_and_codes_keep_working(dpo, settings):
    assert encrypted_fields_unregistered() == []
    (spec,) = [
        s for s in encrypted_fields() if s.label == "governance.StaffTotpDevice.key_encrypted"
    ]
    old_id = crypto.current_key_id()
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = [settings.SUBJECT_ENCRYPTION_KEY]
    settings.SUBJECT_ENCRYPTION_KEY = crypto.generate_key()
    assert reencrypt_field(spec).rewritten == 1
    stored = bytes(StaffTotpDevice.objects.get(user=dpo).key_encrypted)
    assert crypto.ciphertext_key_id(stored) == crypto.current_key_id() != old_id
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = []
    assert _sign_in(totp_fresh_code(totp_device(dpo)))[1].status_code == 302


def test_enrol_command_prints_the_secret_once_audits_and_replaces_only_when_asked():
    user = User.objects.create_superuser("dpo", "dpo@example.com", PASSWORD)
    out = StringIO()
    call_command("enrol_totp", "dpo", stdout=out)
    printed = out.getvalue()
    assert "otpauth://totp/" in printed and "dpo" in printed
    device = StaffTotpDevice.objects.get(user=user)
    secret = base64.b32encode(device.bin_key).decode()
    assert f"secret={secret}" in printed and f"\n  {secret}\n" in printed
    assert AuditEvent.objects.filter(action="staff.totp_enrol", target_id=str(user.pk)).exists()
    assert _sign_in(totp_code(device))[1].status_code == 302

    with pytest.raises(CommandError, match="already has an authenticator"):
        call_command("enrol_totp", "dpo", stdout=StringIO())
    call_command("enrol_totp", "dpo", "--replace", stdout=StringIO())
    assert bytes(StaffTotpDevice.objects.get(user=user).bin_key) != bytes(device.bin_key)


def test_enrol_command_refuses_unknown_and_non_staff_users():
    User.objects.create_user("customer", "c@example.com", PASSWORD)
    for username in ("nobody", "customer"):
        with pytest.raises(CommandError, match="No active staff user"):
            call_command("enrol_totp", username, stdout=StringIO())
    assert not StaffTotpDevice.objects.exists()


def test_seed_demo_says_how_to_enrol_the_demo_admin(purposes):
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "make enrol-totp STAFF=admin" in out.getvalue()
    call_command("enrol_totp", "admin", stdout=StringIO())
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "enrol" not in out.getvalue()
