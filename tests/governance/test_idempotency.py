"""Idempotency records: request hashes keyed, so a list of likely identifiers cannot
reverse them; each record names its subject by the keyed hash alone."""

from __future__ import annotations

import hashlib
import importlib
import json

import pytest

from consent import identity
from governance.idempotency import fingerprint, scoped_key
from governance.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

CONSENTS = "/api/v1/consents"


def _plain_sha256(path: str, payload: object) -> str:
    # What the request hash used to be: reversible by hashing guessed identifiers.
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


def test_stored_request_hash_is_keyed_and_differs_under_another_key(api, settings):
    decisions = [{"purpose": "analytics", "granted": True}]
    body = {"subject_id": "alice@example.com", "decisions": decisions}
    first = api.post(CONSENTS, body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    record = IdempotencyRecord.objects.get()
    assert record.request_hash != _plain_sha256(CONSENTS, body)
    assert record.request_hash == fingerprint(CONSENTS, body)
    assert record.subject_key == identity.subject_key("alice@example.com")
    assert "alice" not in json.dumps(record.response_body)
    again = api.post(CONSENTS, body, headers={"Idempotency-Key": "k-1"})
    assert again.headers["Idempotent-Replayed"] == "true"

    settings.SUBJECT_HASH_KEY = "another-subject-hash-key-of-some-length"
    assert fingerprint(CONSENTS, body) != record.request_hash
    assert scoped_key("k-1", ["a"]) != scoped_key("k-1", ["b"])


def test_records_from_before_keyed_hashes_lose_their_hash_and_banner_device_ids(api):
    from django.apps import apps

    migration = importlib.import_module("governance.migrations.0008_idempotencyrecord_subject_key")
    body = {"subject_id": "bob", "decisions": [{"purpose": "analytics", "granted": True}]}
    assert api.post(CONSENTS, body, headers={"Idempotency-Key": "old"}).status_code == 201
    IdempotencyRecord.objects.update(request_hash=_plain_sha256(CONSENTS, body))
    banner = IdempotencyRecord.objects.create(
        client=IdempotencyRecord.objects.get().client,
        key="banner-old",
        request_hash="0" * 64,
        status_code=201,
        response_body={"device_id_encrypted": "AQ=="},
    )
    migration.forget_unkeyed_hashes(apps, None)
    assert not IdempotencyRecord.objects.filter(pk=banner.pk).exists()
    assert IdempotencyRecord.objects.get().request_hash == ""
    # A retry straddling the upgrade is refused rather than written twice.
    again = api.post(CONSENTS, body, headers={"Idempotency-Key": "old"})
    assert again.status_code == 409
