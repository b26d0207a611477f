"""Imports and exports: a file is checked whole before anything is written, then applied in
batches through the ledger's one write path (chains, states, one outbox event, audit),
idempotent by external id and restartable; exports are ISO/IEC TS 27560 JSON-LD that the
import reads back."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from consent import identity
from consent.checks.selectors import check_one
from consent.imports import check, services
from consent.imports.batches import batch_decrypt
from consent.imports.formats import MAPPINGS_DIR, mapping_names
from consent.imports.selectors import subject_records
from consent.ledger.verify import ledger_verify
from consent.models import (
    ConsentEvent,
    ConsentImport,
    ConsentImportBatch,
    ConsentState,
    ImportedRecord,
    Source,
    Subject,
)
from consent.selectors import subject_find
from governance.actors import Actor
from governance.models import AuditEvent, OutboxEvent
from governance.reencrypt import encrypted_fields
from tests import factories, live
from tests.conftest import assert_error
from tests.embedded import run_on_sqlite

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")
NOW = timezone.now().replace(microsecond=0)


def _at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def _line(subject: str, purpose: str, granted: bool, days_ago: float, ext: str, **more: Any) -> str:
    return json.dumps(
        {
            "subject_id": subject,
            "purpose": purpose,
            "granted": granted,
            "effective_at": _at(days_ago),
            "external_id": ext,
            **more,
        }
    )


def _jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


GOOD = _jsonl(
    _line("ann@example.com", "analytics", True, 30, "x-1", notice_version=1),
    _line("ann@example.com", "analytics", False, 10, "x-2", indication_method="checkbox"),
    _line("ann@example.com", "ml_training", True, 5, "x-3"),
    _line("bob", "analytics", True, 20, "x-4", namespace="device"),
    _line("cy", "direct_marketing", False, 3, "x-5"),
)


def _import(body: bytes, fmt: str = "jsonl", mapping: Any = None, batch_size: int = 2) -> str:
    """Checks, records and applies a file here; the import's id."""
    checked = check.import_check(body=io.BytesIO(body), fmt=fmt, mapping=mapping)
    created = services.import_create(
        actor=SYSTEM, checked=checked, batch_size=batch_size, queue=False
    )
    services.import_apply(import_id=created.id)
    return str(created.id)


def _history(identifier: str, namespace: str = "account") -> list[tuple[Any, ...]]:
    subject = Subject.objects.get(namespace=namespace, key=identity.subject_key(identifier))
    return [
        (
            e.decided_purpose.key,
            e.action,
            e.effective_at,
            e.notice_version,
            e.indication_method,
            e.expires_at,
        )
        for e in ConsentEvent.objects.filter(subject=subject, purpose__isnull=False)
        .select_related("purpose")
        .order_by("effective_at", "seq")
    ]


def services_record(*, subject_id: str, days_ago: float) -> None:
    """A grant of analytics through the API's service, as of `days_ago`."""
    from consent import services as consent_services

    consent_services.consent_record(
        subject_id=subject_id,
        decisions=[consent_services.DecisionInput(purpose="analytics", granted=True)],
        actor=SYSTEM,
        now=NOW - timedelta(days=days_ago),
    )


def _states(identifier: str, namespace: str = "account") -> dict[str, str]:
    subject = Subject.objects.get(namespace=namespace, key=identity.subject_key(identifier))
    return {
        s.purpose.key: s.status
        for s in ConsentState.objects.filter(subject=subject).select_related("purpose")
    }


# --- a valid file ---------------------------------------------------------------------------


def test_a_valid_file_is_applied_with_its_chains_states_one_outbox_event_and_audit(purposes):
    import_id = _import(GOOD)

    done = ConsentImport.objects.get(pk=import_id)
    assert (done.status, done.applied, done.skipped, done.total) == ("completed", 5, 0, 5)
    report = ledger_verify()
    assert report.breaks == [] and report.events == 5
    assert _states("ann@example.com") == {"analytics": "withdrawn", "ml_training": "granted"}
    assert _states("bob", "device") == {"analytics": "granted"}
    assert _states("cy") == {"direct_marketing": "refused"}
    ann = _history("ann@example.com")
    # Original timestamps and notice versions, import as the source.
    assert [(p, a, at, v) for p, a, at, v, *_ in ann] == [
        ("analytics", "granted", NOW - timedelta(days=30), 1),
        ("analytics", "withdrawn", NOW - timedelta(days=10), 1),
        ("ml_training", "granted", NOW - timedelta(days=5), 1),
    ]
    assert {e.source for e in ConsentEvent.objects.all()} == {Source.IMPORT}
    assert ann[0][4] == "import" and ann[1][4] == "checkbox"
    # A grant keeps its purpose's TTL from when it was given.
    assert ann[0][5] == NOW - timedelta(days=30) + purposes["analytics"].consent_ttl
    # One announcement for the whole import, none per record.
    outbox = list(OutboxEvent.objects.values_list("event_type", "payload"))
    assert [t for t, _ in outbox] == ["import.completed"]
    assert outbox[0][1]["applied"] == 5
    actions = list(AuditEvent.objects.order_by("at", "id").values_list("action", flat=True))
    assert actions[0] == "import.create" and actions[-1] == "import.complete"
    assert actions.count("import.batch") == done.batch_count >= 2
    assert ImportedRecord.objects.count() == 5


def test_a_batch_never_splits_a_subject_and_batches_are_destroyed_once_applied(purposes):
    checked = check.import_check(body=io.BytesIO(GOOD), fmt="jsonl")
    created = services.import_create(actor=SYSTEM, checked=checked, batch_size=1, queue=False)
    batches = list(ConsentImportBatch.objects.filter(consent_import=created))
    subjects = [
        {r.subject_id for r in batch_decrypt(created.id, b.index, b.records_encrypted)}
        for b in batches
    ]
    assert len(subjects) == 3 and all(len(s) == 1 for s in subjects)
    services.import_apply(import_id=created.id)
    assert not ConsentImportBatch.objects.filter(records_encrypted__isnull=False).exists()


def test_the_upload_is_stored_encrypted_until_applied(purposes):
    checked = check.import_check(body=io.BytesIO(GOOD), fmt="jsonl")
    created = services.import_create(actor=SYSTEM, checked=checked, queue=False)
    stored = b"".join(
        bytes(b) for b in ConsentImportBatch.objects.values_list("records_encrypted", flat=True)
    )
    assert stored and b"ann@example.com" not in stored and b"x-1" not in stored
    assert "consent.ConsentImportBatch.records_encrypted" in {f.label for f in encrypted_fields()}
    # Identifiers and external ids are kept hashed or encrypted, never plain.
    services.import_apply(import_id=created.id)
    assert ImportedRecord.objects.filter(external_id_hash=check.external_id_hash("x-1")).exists()
    assert not ConsentImportBatch.objects.filter(records_encrypted__isnull=False).exists()


def test_a_failed_import_destroys_its_unapplied_batches(purposes):
    checked = check.import_check(body=io.BytesIO(GOOD), fmt="jsonl")
    created = services.import_create(actor=SYSTEM, checked=checked, batch_size=1, queue=False)
    assert services.import_apply_step(import_id=created.id) == "batch"
    services.import_fail(import_id=created.id, error="RuntimeError: the worker gave up")

    created.refresh_from_db()
    assert created.status == ConsentImport.Status.FAILED and created.applied
    assert not ConsentImportBatch.objects.filter(records_encrypted__isnull=False).exists()
    audit = AuditEvent.objects.get(action="import.fail", target_id=str(created.id))
    assert audit.detail["batches_destroyed"] == 2
    # Failed is final: no step applies (or needs) a destroyed batch.
    assert services.import_apply_step(import_id=created.id) == "done"


# --- an invalid file ------------------------------------------------------------------------

BAD = _jsonl(
    _line("ann", "analytics", True, 3, "b-1"),
    _line("ann", "nope", True, 3, "b-2"),
    "{not json",
    _line("bob", "analytics", True, 2, "b-1"),
    json.dumps({"subject_id": "cy", "purpose": "analytics", "granted": "maybe"}),
    _line("dee", "analytics", True, 3, "b-6", indication_method="pre_ticked"),
    _line("eve", "analytics", True, 3, "b-7", notice_version=9),
    _line("fay", "analytics", True, -2, "b-8"),
)


def test_an_invalid_file_names_its_rows_and_writes_nothing(api):
    audited = AuditEvent.objects.count()
    response = api.post(
        "/api/v1/imports?format=jsonl", raw=BAD, content_type="application/x-ndjson"
    )
    body = assert_error(response, 400, "import_invalid")
    rows = {r["row"]: " ".join(r["reasons"]) for r in body["error"]["detail"]["rows"]}
    assert set(rows) == {2, 3, 4, 5, 6, 7, 8}
    assert "unknown or inactive purpose 'nope'" in rows[2]
    assert "not JSON" in rows[3]
    assert "external_id repeats the one of row 1" in rows[4]
    assert "missing effective_at, external_id" in rows[5] and "granted" in rows[5]
    assert "affirmative" in rows[6]
    assert "no notice version 9" in rows[7]
    assert "in the future" in rows[8]
    assert body["error"]["detail"]["invalid_rows"] == 7
    assert not ConsentImport.objects.exists() and not ConsentEvent.objects.exists()
    assert not Subject.objects.exists() and AuditEvent.objects.count() == audited


def test_the_command_exits_non_zero_on_an_invalid_file_and_writes_nothing(purposes, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(BAD)
    err = io.StringIO()
    with pytest.raises(CommandError, match="7 rows are invalid"):
        call_command("import_consents", str(path), "--format", "jsonl", stderr=err)
    assert "row 2: unknown or inactive purpose 'nope'" in err.getvalue()
    assert not ConsentEvent.objects.exists() and not ConsentImport.objects.exists()


def test_the_command_applies_a_file_with_a_progress_bar(purposes, tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_bytes(GOOD)
    out = io.StringIO()
    call_command("import_consents", str(path), "--format", "jsonl", "--batch-size", "1", stdout=out)
    assert "[" + "#" * 30 + "] 5/5 records" in out.getvalue()
    assert "completed" in out.getvalue()
    assert ConsentEvent.objects.count() == 5


def test_a_dry_run_writes_nothing(purposes, tmp_path, api):
    path = tmp_path / "good.jsonl"
    path.write_bytes(GOOD)
    out = io.StringIO()
    call_command("import_consents", str(path), "--dry-run", stdout=out)
    assert "5 records valid (5 new, 0 imported before)" in out.getvalue()
    response = api.post(
        "/api/v1/imports?dry_run=true", raw=GOOD, content_type="application/x-ndjson"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "dry_run": True,
        "records": 5,
        "ignored": 0,
        "new": 5,
        "already_imported": 0,
    }
    assert not ConsentEvent.objects.exists() and not ConsentImport.objects.exists()
    assert not Subject.objects.exists()


# --- idempotence, history, restarts ---------------------------------------------------------


def test_a_re_import_skips_what_was_imported(purposes):
    _import(GOOD)
    again = _import(GOOD + _jsonl(_line("cy", "direct_marketing", True, 1, "x-6")))
    done = ConsentImport.objects.get(pk=again)
    assert (done.applied, done.skipped) == (1, 5)
    assert ConsentEvent.objects.count() == 6
    assert _states("cy") == {"direct_marketing": "granted"}
    assert ledger_verify().breaks == []


def test_an_older_imported_event_joins_the_history_and_leaves_the_state(purposes):
    factories.record("fay", analytics=True)  # granted now, through the API
    _import(
        _jsonl(
            _line("fay", "analytics", True, 20, "h-1"),
            _line("fay", "analytics", False, 10, "h-2"),
        )
    )
    assert _states("fay") == {"analytics": "granted"}
    history = _history("fay")
    assert [a for _, a, *_ in history] == ["granted", "withdrawn", "granted"]
    assert ledger_verify().breaks == []
    # An as_of check between the imported withdrawal and today's grant sees it.
    _, between = check_one(identifier="fay", purpose_key="analytics", as_of=NOW - timedelta(days=5))
    assert not between.allowed
    _, before = check_one(identifier="fay", purpose_key="analytics", as_of=NOW - timedelta(days=15))
    assert before.allowed
    _, now = check_one(identifier="fay", purpose_key="analytics", as_of=None)
    assert now.allowed


def test_a_newer_imported_event_moves_the_state(purposes):
    services_record(subject_id="gus", days_ago=10)
    _import(_jsonl(_line("gus", "analytics", False, 2, "n-1")))
    assert _states("gus") == {"analytics": "withdrawn"}
    assert [a for _, a, *_ in _history("gus")] == ["granted", "withdrawn"]


def test_a_killed_worker_resumes_at_the_batch_it_left(purposes):
    checked = check.import_check(body=io.BytesIO(GOOD), fmt="jsonl")
    created = services.import_create(actor=SYSTEM, checked=checked, batch_size=1, queue=False)
    assert services.import_apply_step(import_id=created.id) == "batch"
    # The worker dies here; the beat's resume sees the import stall, another worker
    # picks it up.
    assert ConsentImport.objects.get(pk=created.id).status == "running"
    assert services.imports_resume() == 0
    assert services.imports_resume(now=timezone.now() + services.STALE) == 1
    assert services.import_apply(import_id=created.id) == "completed"
    assert services.import_apply_step(import_id=created.id) == "done"
    done = ConsentImport.objects.get(pk=created.id)
    assert (done.applied, done.skipped) == (5, 0)
    assert OutboxEvent.objects.filter(event_type="import.completed").count() == 1


# --- mappings -------------------------------------------------------------------------------


def test_every_documented_mapping_is_shipped_and_named_in_the_docs():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "imports.md").read_text()
    assert set(mapping_names()) == {"cmp-csv", "cmp-user-jsonl", "iso27560"}
    for name in mapping_names():
        assert f"`{name}`" in docs
        json.loads((MAPPINGS_DIR / f"{name}.json").read_text())


def test_the_csv_mapping_reads_a_consent_platform_export(purposes):
    csv = (
        "Data Subject Identifier,Purpose Name,Status,Consent Date,Receipt ID,Purpose Version\n"
        f"ann,Analytics,CONFIRMED,{_at(9)},r-1,1\n"
        f"ann,Machine learning,CONFIRMED,{_at(9)},r-1,\n"
        f"ann,Analytics,WITHDRAWN,{_at(2)},r-2,1\n"
        f"bob,Marketing emails,PENDING,{_at(2)},r-3,\n"
    )
    import_id = _import(csv.encode(), fmt="csv", mapping="cmp-csv")
    done = ConsentImport.objects.get(pk=import_id)
    assert (done.applied, done.ignored) == (3, 1)
    assert _states("ann") == {"analytics": "withdrawn", "ml_training": "granted"}
    assert not Subject.objects.filter(key=identity.subject_key("bob")).exists()


def test_the_per_user_mapping_reads_nested_choices(purposes):
    line = {
        "organization_user_id": "cat@example.com",
        "consents": {
            "purposes": [
                {"id": "analytics", "enabled": True, "updated_at": _at(4)},
                {"id": "ml", "enabled": False, "updated_at": _at(4)},
            ]
        },
    }
    _import(json.dumps(line).encode(), fmt="jsonl", mapping="cmp-user-jsonl")
    assert _states("cat@example.com") == {"analytics": "granted", "ml_training": "refused"}


def test_a_mapping_error_names_the_item(purposes):
    line = {
        "organization_user_id": "cat",
        "consents": {"purposes": [{"id": "analytics", "enabled": "?", "updated_at": _at(1)}]},
    }
    with pytest.raises(check.ImportInvalid) as caught:
        check.import_check(
            body=io.BytesIO(json.dumps(line).encode()), fmt="jsonl", mapping="cmp-user-jsonl"
        )
    assert caught.value.detail["rows"] == [
        {"row": 1, "item": 1, "reasons": ["granted must be true or false"]}
    ]


# --- the API --------------------------------------------------------------------------------


def test_imports_need_the_admin_scope(make_api, purposes):
    reader = make_api("consent:read")
    response = reader.post("/api/v1/imports", raw=GOOD, content_type="application/x-ndjson")
    assert_error(response, 403, "permission_denied")
    assert_error(
        reader.get("/api/v1/imports/00000000-0000-0000-0000-000000000000"), 403, "permission_denied"
    )


@pytest.fixture(scope="module")
def worker(django_db_setup: Any, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock(), live.celery_worker() as proc:
        yield proc


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_api_answers_202_and_a_real_worker_applies_the_import(worker, make_api):
    factories.seed_purposes()
    api = make_api("admin")
    many = _jsonl(*[_line(f"p{i}", "analytics", i % 2 == 0, 2, f"w-{i}") for i in range(30)])
    response = api.post("/api/v1/imports", raw=many, content_type="application/x-ndjson")
    assert response.status_code == 202, response.content
    import_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        progress = api.get(f"/api/v1/imports/{import_id}").json()
        if progress["status"] == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert progress["status"] == "completed", progress
    assert progress["applied"] == 30 and progress["batches"]["done"] == progress["batches"]["total"]
    assert ConsentEvent.objects.count() == 30
    assert_error(api.get("/api/v1/imports/nope"), 404, "not_found")


# --- the export and its round trip ----------------------------------------------------------


def test_the_jsonld_export_reads_back_into_a_fresh_subject_set_with_the_same_history(api):
    factories.record("hal@example.com", analytics=True, ml_training=False)
    factories.record("hal@example.com", analytics=False)
    factories.record("ida", direct_marketing=True)
    response = api.get("/api/v1/subjects/hal@example.com/records", format="jsonld")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/ld+json"
    document = response.json()
    assert document["@context"]["dpv"] == "https://w3id.org/dpv#"
    assert {n["dpv:hasConsentStatus"]["@id"] for n in document["@graph"]} == {
        "dpv:ConsentGiven",
        "dpv:ConsentRefused",
        "dpv:ConsentWithdrawn",
    }
    assert all(n["@type"] == "dpv:ConsentRecord" for n in document["@graph"])
    # Everyone's records from the command, then imported as a fresh set of people.
    out = io.StringIO()
    call_command("export_consents", stdout=out)
    everyone = json.loads(out.getvalue())
    assert len(everyone["@graph"]) == 4
    for node in everyone["@graph"]:
        node["dpv:hasDataSubject"]["dct:identifier"] = (
            "copy-" + node["dpv:hasDataSubject"]["dct:identifier"]
        )
    _import(json.dumps(everyone).encode(), fmt="jsonld")
    for person in ("hal@example.com", "ida"):
        assert _history("copy-" + person) == _history(person)
        assert _states("copy-" + person) == _states(person)
    assert ledger_verify().breaks == []
    # The API reads it back too (all imported before: skipped).
    response = api.post(
        "/api/v1/imports", raw=json.dumps(everyone), content_type="application/ld+json"
    )
    assert response.status_code == 202, response.content


def test_an_unknown_subject_exports_an_empty_graph(api):
    assert subject_records(subject=subject_find(identifier="nobody"))["@graph"] == []
    response = api.get("/api/v1/subjects/nobody/records")
    assert response.status_code == 200 and response.json()["@graph"] == []
    assert_error(api.get("/api/v1/subjects/nobody/records", format="csv"), 400, "invalid_request")


def test_effective_at_keeps_its_microseconds_and_offset(purposes):
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.get_fixed_timezone(120))
    _import(
        json.dumps(
            {
                "subject_id": "jo",
                "purpose": "security",
                "granted": False,
                "effective_at": at.isoformat(),
                "external_id": "m-1",
            }
        ).encode()
    )
    assert _history("jo")[0][2] == at


SQLITE_SCRIPT = """
import io, json
from django.core.management import call_command
call_command("migrate", verbosity=0)
from consent.ledger.verify import ledger_verify
from consent.models import ConsentEvent, ConsentState
from tests import factories
factories.seed_purposes()
factories.record("kim", analytics=True)
lines = [
    {"subject_id": "kim", "purpose": "analytics", "granted": False,
     "effective_at": "2026-01-01T00:00:00+00:00", "external_id": "s-1"},
    {"subject_id": "lu", "purpose": "ml_training", "granted": True,
     "effective_at": "2026-02-01T00:00:00+00:00", "external_id": "s-2"},
]
with open("in.jsonl", "w") as f:
    f.write("\\n".join(json.dumps(x) for x in lines))
call_command("import_consents", "in.jsonl", "--batch-size", "1", stdout=io.StringIO())
call_command("import_consents", "in.jsonl", stdout=io.StringIO())
assert ConsentEvent.objects.count() == 3
assert set(ConsentState.objects.values_list("status", flat=True)) == {"granted"}
assert ledger_verify().breaks == []
out = io.StringIO()
call_command("export_consents", stdout=out)
assert len(json.loads(out.getvalue())["@graph"]) == 3
print("sqlite-import-ok")
"""


@pytest.mark.slow
def test_imports_work_on_sqlite_the_embedded_default(tmp_path: Path) -> None:
    # The script writes its file into the working directory: the temporary one.
    assert "sqlite-import-ok" in run_on_sqlite(tmp_path, SQLITE_SCRIPT, cwd=tmp_path)


def test_decisions_from_before_an_erasure_are_not_brought_back(purposes):
    from consent.services import subject_mark_erased

    factories.record("nia", analytics=True)
    subject = Subject.objects.get(key=identity.subject_key("nia"))
    subject_mark_erased(subject=subject, now=NOW - timedelta(days=5))
    import_id = _import(
        _jsonl(
            _line("nia", "analytics", True, 9, "e-1"),  # before the erasure: stays erased
            _line("nia", "ml_training", True, 1, "e-2"),  # after it: a new history
        )
    )
    done = ConsentImport.objects.get(pk=import_id)
    assert (done.applied, done.skipped) == (1, 1)
    imported = ConsentEvent.objects.filter(source=Source.IMPORT).select_related("purpose")
    assert [e.decided_purpose.key for e in imported] == ["ml_training"]
