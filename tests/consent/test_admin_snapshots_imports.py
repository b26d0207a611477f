"""The admin pages of lakehouse snapshots and imports: read-only metadata and progress,
never a snapshot's key or file nor an import's records; a snapshot deleted through the
API's service and an import resumed, each audited with the staff user."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from consent.imports import check
from consent.imports import services as imports
from consent.models import ConsentImport, ConsentImportBatch, Decision, Snapshot
from consent.snapshots import files
from consent.snapshots import services as snapshots
from consent.snapshots.keys import pseudonym_key_of
from governance.actors import Actor
from governance.models import AuditEvent
from tests import factories
from tests.conftest import Api
from tests.secret_forms import secret_forms

pytestmark = pytest.mark.django_db

SNAPSHOTS = "/admin/consent/snapshot/"
IMPORTS = "/admin/consent/consentimport/"
NOW = timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True)
def _snapshot_dir(settings: Any, tmp_path: Any) -> None:
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"


def _member(role: str, name: str | None = None) -> User:
    user = User.objects.create_user(name or role.lower().replace(" ", "-"), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def officer() -> User:
    return _member("Privacy officer")


@pytest.fixture
def pipeline(purposes: Any) -> Api:
    for name, allowed in [("ann", True), ("bob", True), ("cy", False)]:
        factories.record(name, ml_training=allowed)
    _, key = factories.api_client(scopes=["checks"])
    return Api(key)


def _snapshot(api: Api) -> Snapshot:
    """A snapshot made and built as a pipeline makes it: through the API."""
    response = api.post("/api/v1/snapshots", {"purpose": "ml_training"})
    assert response.status_code == 202, response.content
    assert snapshots.snapshot_build(snapshot_id=response.json()["id"]) == "ready"
    return Snapshot.objects.get(pk=response.json()["id"])


def _used(api: Api, snapshot: Snapshot, *identifiers: str) -> None:
    key = pseudonym_key_of(snapshot)
    body = "".join(
        json.dumps({"pseudonym": hmac.new(key, i.encode(), hashlib.sha256).hexdigest()}) + "\n"
        for i in identifiers
    )
    response = api.post(
        f"/api/v1/snapshots/{snapshot.pk}/usage?model=churn-v1",
        raw=body,
        content_type="application/x-ndjson",
    )
    assert response.status_code == 201, response.content


def _assert_nowhere(content: bytes, secret: bytes) -> None:
    for form in secret_forms(secret):
        assert form not in content, form


def _staff_audits(user: User, **filters: Any) -> Any:
    return AuditEvent.objects.filter(actor_type="staff", actor_id=str(user.pk), **filters)


# --- snapshots ------------------------------------------------------------------------------


def test_snapshot_pages_show_metadata_progress_and_usage_never_the_key_nor_the_file(
    pipeline, officer, staff_client
):
    snapshot = _snapshot(pipeline)
    _used(pipeline, snapshot, "ann", "bob")
    key = pseudonym_key_of(snapshot)
    encrypted = bytes(snapshot.pseudonym_key_encrypted)
    # The API hands its creator the key: what a leak would look like.
    assert pipeline.get(f"/api/v1/snapshots/{snapshot.pk}").json()["pseudonym_key"] == (
        base64.b64encode(key).decode()
    )
    client = staff_client(officer)

    listed = client.get(SNAPSHOTS)
    assert listed.status_code == 200
    page = listed.content.decode()
    assert snapshot.actor_label in page and f"{snapshot.file_sha256[:12]}…" in page
    assert "Ready" in page and "HMAC of the identifier" in page
    detail = client.get(reverse("admin:consent_snapshot_change", args=[snapshot.pk]))
    assert detail.status_code == 200
    shown = detail.content.decode()
    assert snapshot.file_sha256 in shown
    assert "1 of 1" in shown  # ranges written of ranges
    decision = Decision.objects.get(snapshot=snapshot)
    assert reverse("admin:consent_decision_change", args=[decision.pk]) in shown
    assert "model churn-v1, 2 people" in shown
    everything = reverse("admin:consent_decision_changelist") + f"?snapshot__exact={snapshot.pk}"
    assert everything in shown
    decisions = client.get(everything)
    assert decisions.status_code == 200 and str(decision.pk) in decisions.content.decode()
    for response in (listed, detail):
        _assert_nowhere(response.content, key)
        _assert_nowhere(response.content, encrypted)
        assert b"pseudonym_key" not in response.content
        assert f"/api/v1/snapshots/{snapshot.pk}/file".encode() not in response.content
        assert b"snapshot.parquet" not in response.content
        assert f"{SNAPSHOTS}add/".encode() not in response.content
    assert "Delete snapshot (file and key)" in shown
    # No add, no edit, no Django delete (it would drop the row and leave file and key).
    assert client.get(f"{SNAPSHOTS}add/").status_code == 403
    change = reverse("admin:consent_snapshot_change", args=[snapshot.pk])
    assert client.post(change, {"purpose": "", "status": "ready"}).status_code == 403
    assert client.get(f"{SNAPSHOTS}{snapshot.pk}/delete/").status_code == 403
    assert "delete_selected" not in page
    # A search that is not an id finds nothing rather than failing.
    assert client.get(SNAPSHOTS, {"q": "not-a-uuid"}).status_code == 200


def test_a_pending_snapshot_shows_its_build_progress_and_error(pipeline, officer, staff_client):
    created = snapshots.snapshot_create(
        actor=Actor.system("test"), purpose_key="ml_training", chunk_size=1
    )
    assert snapshots.snapshot_build_step(snapshot_id=created.pk).outcome == "chunk"
    client = staff_client(officer)
    page = client.get(reverse("admin:consent_snapshot_change", args=[created.pk]))
    assert page.status_code == 200 and "1 of 3" in page.content.decode()
    snapshots.snapshot_fail(snapshot=created, error="OSError: disk full")
    failed = client.get(reverse("admin:consent_snapshot_change", args=[created.pk]))
    assert "OSError: disk full" in failed.content.decode()
    assert "Delete snapshot (file and key)" not in failed.content.decode()


def test_deleting_from_the_list_asks_first_then_destroys_file_and_key_audited(
    pipeline, officer, staff_client
):
    snapshot = _snapshot(pipeline)
    key = pseudonym_key_of(snapshot)
    assert files.public_path(snapshot.pk).is_file()
    client = staff_client(officer)
    chosen = {"action": "destroy_snapshots", "_selected_action": [str(snapshot.pk)]}

    asked = client.post(SNAPSHOTS, chosen)
    assert asked.status_code == 200 and b"Please confirm" in asked.content
    _assert_nowhere(asked.content, key)
    assert Snapshot.objects.get(pk=snapshot.pk).status == Snapshot.Status.READY
    assert files.public_path(snapshot.pk).is_file()

    done = client.post(SNAPSHOTS, {**chosen, "confirmed": "yes"})
    assert done.status_code == 302
    gone = Snapshot.objects.get(pk=snapshot.pk)
    assert gone.status == Snapshot.Status.EXPIRED and gone.pseudonym_key_encrypted is None
    assert not files.snapshot_dir(snapshot.pk).exists()
    audit = _staff_audits(officer, action="snapshot.delete").get()
    assert audit.target_id == str(snapshot.pk) and audit.actor_label == officer.username
    # The pipeline sees what the API's own DELETE leaves.
    assert pipeline.get(f"/api/v1/snapshots/{snapshot.pk}").json()["status"] == "expired"
    assert pipeline.get(f"/api/v1/snapshots/{snapshot.pk}/file").status_code == 409
    # Twice is harmless: nothing left to delete, nothing audited again.
    client.post(SNAPSHOTS, {**chosen, "confirmed": "yes"})
    assert _staff_audits(officer, action="snapshot.delete").count() == 1


def test_deleting_from_a_snapshots_page_asks_first_then_destroys_it(
    pipeline, officer, staff_client
):
    snapshot = _snapshot(pipeline)
    destroy = reverse("admin:consent_snapshot_destroy", args=[snapshot.pk])
    client = staff_client(officer)
    page = client.get(reverse("admin:consent_snapshot_change", args=[snapshot.pk]))
    assert destroy in page.content.decode()
    asked = client.get(destroy)
    assert asked.status_code == 200 and b"Please confirm" in asked.content
    assert client.post(destroy).status_code == 200  # not confirmed: asked again
    assert Snapshot.objects.get(pk=snapshot.pk).pseudonym_key_encrypted is not None
    assert client.post(destroy, {"confirmed": "yes"}).status_code == 302
    gone = Snapshot.objects.get(pk=snapshot.pk)
    assert gone.status == Snapshot.Status.EXPIRED and gone.pseudonym_key_encrypted is None
    assert not files.public_path(snapshot.pk).exists()
    assert _staff_audits(officer, action="snapshot.delete", target_id=str(snapshot.pk)).exists()


def test_an_auditor_sees_snapshots_but_cannot_delete_them(pipeline, staff_client):
    snapshot = _snapshot(pipeline)
    auditor = staff_client(_member("Auditor"))
    page = auditor.get(SNAPSHOTS)
    assert page.status_code == 200 and b"destroy_snapshots" not in page.content
    detail = auditor.get(reverse("admin:consent_snapshot_change", args=[snapshot.pk]))
    assert detail.status_code == 200 and b"Delete snapshot" not in detail.content
    chosen = {"action": "destroy_snapshots", "_selected_action": [str(snapshot.pk)]}
    auditor.post(SNAPSHOTS, {**chosen, "confirmed": "yes"})
    destroy = reverse("admin:consent_snapshot_destroy", args=[snapshot.pk])
    assert auditor.post(destroy, {"confirmed": "yes"}).status_code == 403
    assert Snapshot.objects.get(pk=snapshot.pk).status == Snapshot.Status.READY
    assert files.public_path(snapshot.pk).is_file()
    support = staff_client(_member("Support"))
    assert support.get(SNAPSHOTS).status_code == 403


# --- imports --------------------------------------------------------------------------------


def _line(subject: str, purpose: str, granted: bool, days_ago: float, ext: str) -> str:
    at = (NOW - timedelta(days=days_ago)).isoformat()
    return json.dumps(
        {
            "subject_id": subject,
            "purpose": purpose,
            "granted": granted,
            "effective_at": at,
            "external_id": ext,
        }
    )


FILE = (
    "\n".join(
        [
            _line("ann@example.com", "analytics", True, 30, "ext-ann-1"),
            _line("bob@example.com", "analytics", False, 20, "ext-bob-1"),
            _line("cy@example.com", "ml_training", True, 5, "ext-cy-1"),
        ]
    )
    + "\n"
).encode()
RECORD_TEXT = [b"ann@example.com", b"bob@example.com", b"cy@example.com", b"ext-ann-1"]


def _import_created(batch_size: int = 1) -> ConsentImport:
    """An import recorded as the API records it (application not queued: applied here)."""
    checked = check.import_check(body=io.BytesIO(FILE), fmt="jsonl", mapping=None)
    return imports.import_create(
        actor=Actor.system("import-command"), checked=checked, batch_size=batch_size, queue=False
    )


def test_import_pages_show_progress_never_the_records(purposes, officer, staff_client):
    running = _import_created()
    assert imports.import_apply_step(import_id=running.pk) == "batch"
    completed = _import_created(batch_size=10)  # the same ids: skipped where applied
    assert imports.import_apply(import_id=completed.pk) == "completed"
    waiting = [
        bytes(b.records_encrypted)
        for b in ConsentImportBatch.objects.filter(consent_import=running, done=False)
    ]
    assert len(waiting) == 2
    client = staff_client(officer)

    listed = client.get(IMPORTS)
    assert listed.status_code == 200
    page = listed.content.decode()
    assert "1 of 3" in page and "1 of 1" in page  # batches applied of batches
    assert "Being applied" in page and "Completed" in page and "jsonl" in page
    detail = client.get(reverse("admin:consent_consentimport_change", args=[running.pk]))
    assert detail.status_code == 200 and running.file_sha256 in detail.content.decode()
    for response in (listed, detail):
        for text in RECORD_TEXT:
            assert text not in response.content
        for ciphertext in waiting:
            _assert_nowhere(response.content, ciphertext)
        assert f"{IMPORTS}add/".encode() not in response.content
    assert client.get(f"{IMPORTS}add/").status_code == 403
    assert client.get(f"{IMPORTS}{running.pk}/delete/").status_code == 403
    change = reverse("admin:consent_consentimport_change", args=[running.pk])
    assert client.post(change, {"status": "completed"}).status_code == 403
    assert "delete_selected" not in page
    filtered = client.get(IMPORTS, {"status__exact": "completed"}).content.decode()
    assert "1 of 1" in filtered and "1 of 3" not in filtered


def test_resume_queues_unfinished_imports_again_audited(
    purposes, officer, staff_client, django_capture_on_commit_callbacks
):
    stalled = _import_created()
    assert imports.import_apply_step(import_id=stalled.pk) == "batch"
    finished = _import_created(batch_size=10)
    imports.import_apply(import_id=finished.pk)
    client = staff_client(officer)
    chosen = {"action": "resume", "_selected_action": [str(stalled.pk), str(finished.pk)]}
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(IMPORTS, chosen, follow=True)
    assert response.status_code == 200
    assert "1 imports queued again. 1 had already completed" in response.content.decode()
    assert len(queued) == 1  # one apply message, for the unfinished import only
    audit = _staff_audits(officer, action="import.resume").get()
    assert audit.target_id == str(stalled.pk)
    # What the message asks a worker to do finishes the import.
    assert imports.import_apply(import_id=stalled.pk) == "completed"


def test_an_auditor_sees_imports_but_cannot_resume_them(purposes, staff_client):
    stalled = _import_created()
    auditor = staff_client(_member("Auditor"))
    page = auditor.get(IMPORTS)
    assert page.status_code == 200 and b'value="resume"' not in page.content
    auditor.post(IMPORTS, {"action": "resume", "_selected_action": [str(stalled.pk)]})
    assert not AuditEvent.objects.filter(action="import.resume").exists()
    support = staff_client(_member("Support"))
    assert support.get(IMPORTS).status_code == 403
