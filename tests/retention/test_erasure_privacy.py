"""What an erasure leaves behind: no identifier in any column, encrypted or not, once its
announcement is delivered; idempotency records go with the subject; key rotation does not
strand an erasure opened before it."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import models
from django.utils import timezone

from consent import identity
from governance import crypto, services
from governance.actors import Actor
from governance.models import IdempotencyRecord, OutboxEvent, WebhookDelivery
from governance.outbox import outbox_erased_identifiers_forget
from governance.reencrypt import encrypted_fields, encrypted_fields_unregistered
from governance.tasks import outbox_dispatch_task
from retention.models import AccessRequest, ErasureRequest, RequestStatus
from retention.services import rights
from tests import factories, live

pytestmark = pytest.mark.django_db(databases=["default", "features"])

ERASURE = "/api/v1/erasure-requests"
ACCESS = "/api/v1/access-requests"
CONSENTS = "/api/v1/consents"
PERSON = "erin.4@example.com"


@pytest.fixture
def receiver() -> Any:
    r = live.Receiver().start()
    yield r
    r.stop()


def _subscribe(url: str) -> None:
    services.webhook_subscription_create(url=url, actor=Actor.system("test"))


def _deliver_everything_due() -> None:
    """What the worker does: fan out, then attempt each due delivery once."""
    services.outbox_fan_out()
    for delivery_id in WebhookDelivery.objects.filter(status="pending").values_list(
        "pk", flat=True
    ):
        services.webhook_delivery_attempt(delivery_id=delivery_id)


def _known_everywhere(api: Any) -> None:
    """PERSON's consents (with an Idempotency-Key), a completed access export, the outbox."""
    body = {"subject_id": PERSON, "decisions": [{"purpose": "analytics", "granted": True}]}
    assert api.post(CONSENTS, body, headers={"Idempotency-Key": "k-1"}).status_code == 201
    factories.record(PERSON, ml_training=True)
    factories.record("bystander", analytics=True)
    access_id = api.post(ACCESS, {"subject_id": PERSON}).json()["id"]
    rights.access_execute(request_id=access_id)
    assert AccessRequest.objects.get(pk=access_id).export_encrypted is not None


def _erase(api: Any, identifier: str = PERSON, namespace: str = "account") -> ErasureRequest:
    request = rights.erasure_request_create(
        subject_id=identifier, actor=Actor.system("test"), namespace=namespace
    )
    return rights.erasure_execute(request_id=request.pk)


def _traces_of(identifier: str) -> list[str]:
    """Every place the identifier can still be read: each encrypted column of each table
    decrypted with its registered associated data, and every other column as stored."""
    needle = identifier.encode()
    found = []
    for spec in encrypted_fields():
        for row in spec.model._base_manager.exclude(**{f"{spec.field}__isnull": True}):
            plain = crypto.decrypt(bytes(getattr(row, spec.field)), aad=spec.aad(row))
            if needle in plain:
                found.append(f"{spec.label} pk={row.pk}")
    for model in apps.get_models():
        names = [
            f.attname for f in model._meta.concrete_fields if not isinstance(f, models.BinaryField)
        ]
        for values in model._base_manager.values_list(*names):
            if any(identifier in str(v) for v in values):
                found.append(f"{model._meta.label} (plaintext)")
    return found


def test_delivered_erasure_leaves_the_identifier_in_no_column_of_any_table(api, receiver):
    assert encrypted_fields_unregistered() == []  # the walk below reaches every column
    _subscribe(receiver.url)
    _known_everywhere(api)
    _deliver_everything_due()
    assert _traces_of(PERSON)  # the walk does find what is there

    assert _erase(api).status == RequestStatus.COMPLETE
    _deliver_everything_due()

    delivered = [r["body"] for r in receiver.accepted() if r["body"]["type"] == "subject.erased"]
    assert [b["subject"]["id"] for b in delivered] == [PERSON]  # subscribers were told who
    announcement = OutboxEvent.objects.get(event_type="subject.erased")
    assert announcement.subject_identifier_encrypted is None
    assert announcement.subject_key == identity.subject_key(PERSON)  # the keyed hash stays
    assert _traces_of(PERSON) == []
    assert _traces_of("bystander")  # others are untouched


def test_erasure_announcement_no_subscriber_wants_keeps_no_identifier(api):
    factories.record(PERSON, analytics=True)
    _erase(api)
    services.outbox_fan_out()
    assert OutboxEvent.objects.get(event_type="subject.erased").subject_identifier_encrypted is None


def test_parked_erasure_announcement_keeps_its_identifier_until_the_keep_days_pass(
    api, receiver, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_ERASED_IDENTIFIER_KEEP_DAYS = 30
    receiver.respond = lambda body: (500, 0.0)
    _subscribe(receiver.url)
    factories.record(PERSON, analytics=True)
    _erase(api)
    _deliver_everything_due()
    parked = WebhookDelivery.objects.get(event__event_type="subject.erased")
    assert parked.status == "parked"
    announcement = parked.event

    def identifier() -> bytes | None:
        announcement.refresh_from_db()
        blob = announcement.subject_identifier_encrypted
        return crypto.decrypt(bytes(blob), aad=announcement.subject_key.encode()) if blob else None

    outbox_dispatch_task(sweep=True)  # today's sweep
    assert outbox_erased_identifiers_forget(now=parked.last_attempt_at + timedelta(days=29)) == 0
    assert identifier() == PERSON.encode()  # the admin can still redeliver it in full
    assert outbox_erased_identifiers_forget(now=parked.last_attempt_at + timedelta(days=31)) == 1
    assert identifier() is None


def test_redelivered_erasure_announcement_names_the_person_then_forgets_once_all_have_it(
    api, receiver, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    failing = live.Receiver().start()
    failing.respond = lambda body: (500, 0.0)
    try:
        _subscribe(receiver.url)
        _subscribe(failing.url)
        factories.record(PERSON, analytics=True)
        _erase(api)
        _deliver_everything_due()
        announcement = OutboxEvent.objects.get(event_type="subject.erased")
        assert announcement.subject_identifier_encrypted is not None  # one subscriber waits
        failing.respond = lambda body: (200, 0.0)
        services.webhook_delivery_redeliver(
            deliveries=WebhookDelivery.objects.filter(status="parked"),
            actor=Actor.system("test"),
        )
        _deliver_everything_due()
        late = [r["body"] for r in failing.accepted() if r["body"]["type"] == "subject.erased"]
        assert [b["subject"]["id"] for b in late] == [PERSON]
        announcement.refresh_from_db()
        assert announcement.subject_identifier_encrypted is None
    finally:
        failing.stop()


# --- idempotency records (finding: unkeyed request hashes) -------------------------------------


def test_erasure_removes_the_subjects_idempotency_records(api):
    for subject_id, key in ((PERSON, "k-1"), (PERSON, "k-2"), ("bystander", "k-3")):
        body = {"subject_id": subject_id, "decisions": [{"purpose": "analytics", "granted": True}]}
        assert api.post(CONSENTS, body, headers={"Idempotency-Key": key}).status_code == 201
    withdraw = api.post(
        f"/api/v1/subjects/{PERSON}/withdrawals", {}, headers={"Idempotency-Key": "k-4"}
    )
    assert withdraw.status_code in (200, 201)
    mine = identity.subject_key(PERSON)
    assert IdempotencyRecord.objects.filter(subject_key=mine).count() == 3
    done = _erase(api)
    assert not IdempotencyRecord.objects.filter(subject_key=mine).exists()
    assert IdempotencyRecord.objects.filter(subject_key=identity.subject_key("bystander")).exists()
    assert done.progress["targets"]["governance.IdempotencyRecord"] == {
        "status": "done",
        "removed": 3,
        "files_removed": 0,
    }


# --- key rotation (finding: rotation missed fields) -----------------------------------------


def test_erasure_opened_before_a_key_rotation_completes_after_the_old_key_is_dropped(api, settings):
    factories.record(PERSON, analytics=True)
    access_id = api.post(ACCESS, {"subject_id": PERSON}).json()["id"]
    rights.access_execute(request_id=access_id)
    opened = rights.erasure_request_create(subject_id=PERSON, actor=Actor.system("test"))

    old_key = settings.SUBJECT_ENCRYPTION_KEY
    settings.SUBJECT_ENCRYPTION_KEY = crypto.generate_key()
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = [old_key]
    call_command("rotate_encryption_key", "--batch-size", "1", stdout=StringIO())
    settings.SUBJECT_ENCRYPTION_OLD_KEYS = []  # the old key is gone

    export = api.get(f"{ACCESS}/{access_id}")  # an export made before still opens
    assert export.status_code == 200 and PERSON in export.content.decode()
    done = rights.erasure_execute(request_id=opened.pk, now=timezone.now())
    assert done.status == RequestStatus.COMPLETE
    announcement = OutboxEvent.objects.get(event_type="subject.erased")
    assert (
        crypto.decrypt(
            bytes(announcement.subject_identifier_encrypted), aad=announcement.subject_key.encode()
        )
        == PERSON.encode()
    )
