"""Encryption key rotation: every encrypted value re-encrypted in batches, reads working."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from consent import identity, selectors
from consent.models import Subject
from governance import crypto, reencrypt, services, signing, webhooks
from governance.actors import Actor
from governance.models import OutboxEvent, SigningKey, WebhookSubscription
from governance.reencrypt import encrypted_fields, encrypted_fields_unregistered, reencrypt_field
from tests import factories

pytestmark = pytest.mark.django_db

NEW_KEY = crypto.generate_key()


def _everything_readable() -> None:
    for s in Subject.objects.all():
        assert (identity.decrypt_identifier(s.identifier_encrypted, key=s.key) or "").startswith(
            "user-"
        )
    for e in OutboxEvent.objects.all():
        assert e.subject_identifier_encrypted is not None
        crypto.decrypt(bytes(e.subject_identifier_encrypted), aad=e.subject_key.encode())
    for w in WebhookSubscription.objects.all():
        assert webhooks.secret_decrypt(w.secret_encrypted, subscription_id=w.pk).startswith("whsec")
    for k in SigningKey.objects.all():
        signing.private_key_decrypt(k.private_key_encrypted, kid=k.kid)


def _key_ids() -> set[bytes]:
    ids = set()
    for spec in encrypted_fields():
        for blob in spec.model._default_manager.values_list(spec.field, flat=True):
            if blob is not None:
                ids.add(crypto.ciphertext_key_id(bytes(blob)))
    return ids


@pytest.fixture
def data(purposes):
    for i in range(5):
        factories.record(f"user-{i}", analytics=True)
    services.webhook_subscription_create(url="https://h.example.com/", actor=Actor.system())
    signing.signing_key_rotate()


def test_rotation_reencrypts_everything_in_batches_with_reads_working_throughout(data, settings):
    old_key = settings.SUBJECT_ENCRYPTION_KEY
    old_id = crypto.current_key_id()
    settings.SUBJECT_ENCRYPTION_KEY = NEW_KEY
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = [old_key]
    new_id = crypto.current_key_id()
    _everything_readable()  # before: old ciphertexts, read with the old key
    batches = []

    def between_batches(progress) -> None:
        batches.append(progress.label)
        _everything_readable()  # mixed old and new ciphertexts
        assert selectors.subject_find(identifier="user-3") is not None

    for spec in encrypted_fields():
        reencrypt_field(spec, batch_size=2, after_batch=between_batches)
    assert batches.count("consent.Subject.identifier_encrypted") == 3  # 5 rows, batches of 2
    assert _key_ids() == {new_id} and old_id not in _key_ids()
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = []
    _everything_readable()  # the old key is gone: nothing needs it


def test_command_reports_and_is_safe_to_run_twice(data, settings):
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = [settings.SUBJECT_ENCRYPTION_KEY]
    settings.SUBJECT_ENCRYPTION_KEY = NEW_KEY
    with pytest.raises(CommandError, match="still under older keys"):
        call_command("rotate_encryption_key", "--check", stdout=StringIO())
    out = StringIO()
    call_command("rotate_encryption_key", "--batch-size", "3", stdout=out)
    assert "consent.Subject.identifier_encrypted: 5 scanned, 5 re-encrypted" in out.getvalue()
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "5 scanned, 0 re-encrypted" in out.getvalue()
    assert "may leave SUBJECT_ENCRYPTION_OLD_KEYS" in out.getvalue()


def test_erased_identifiers_stay_erased(data, settings):
    Subject.objects.filter(pk=Subject.objects.first().pk).update(identifier_encrypted=None)
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = [settings.SUBJECT_ENCRYPTION_KEY]
    settings.SUBJECT_ENCRYPTION_KEY = NEW_KEY
    call_command("rotate_encryption_key", stdout=StringIO())
    assert Subject.objects.filter(identifier_encrypted__isnull=True).count() == 1


def test_every_encrypted_column_of_every_model_is_registered_for_rotation():
    # The rule: every BinaryField holds ciphertext, is named ..._encrypted and is registered.
    assert encrypted_fields_unregistered() == []
    labels = {spec.label for spec in encrypted_fields()}
    assert {
        "retention.ErasureRequest.identifier_encrypted",
        "retention.AccessRequest.export_encrypted",
    } <= labels


def test_an_encrypted_column_left_out_of_the_registry_is_reported(monkeypatch):
    kept = [s for s in encrypted_fields() if s.label != "consent.Subject.identifier_encrypted"]
    monkeypatch.setattr(reencrypt, "_REGISTRY", kept)
    assert encrypted_fields_unregistered() == [
        "consent.Subject.identifier_encrypted: not registered with register_encrypted_field"
    ]
