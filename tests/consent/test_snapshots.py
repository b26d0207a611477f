"""Snapshots: built by the one rule in restartable chunks, signed, readable only by their
creator, destroyed at expiry; usage uploads leave a decision with lineage."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import json
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import identity, services
from consent.checks.selectors import purpose_rule_get
from consent.checks.services import checks_run
from consent.models import Decision, DecisionLineage, Snapshot, SnapshotChunk, Subject
from consent.snapshots import files
from consent.snapshots import services as snapshots
from consent.snapshots.keys import pseudonym_key_of
from consent.tasks import snapshots_expire_task
from governance import services as governance_services
from governance.actors import Actor
from governance.models import AuditEvent
from governance.signing import TYP_SNAPSHOT_MANIFEST, JwsInvalid, jwks, jws_verify
from tests import factories
from tests.conftest import Api, assert_error
from tests.embedded import run_on_sqlite

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")


@pytest.fixture(autouse=True)
def _snapshot_dir(settings: Any, tmp_path: Any) -> None:
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"


@pytest.fixture
def owner(purposes: Any) -> tuple[Any, Api]:
    client, key = factories.api_client(scopes=["checks"])
    return client, Api(key)


def _people() -> None:
    factories.record("ann", ml_training=True)
    factories.record("bob", ml_training=True)
    factories.record("cy", ml_training=False)
    factories.record("dee", analytics=True)  # known, but never asked about ml_training


def _erase(identifier: str) -> Subject:
    subject = Subject.objects.get(key=identity.subject_key(identifier))
    services.subject_mark_erased(subject=subject, now=timezone.now())
    subject.refresh_from_db()
    return subject


def _create(api: Api, **body: Any) -> str:
    response = api.post("/api/v1/snapshots", {"purpose": "ml_training", **body})
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    snapshot_id = str(response.json()["id"])
    assert snapshots.snapshot_build(snapshot_id=snapshot_id) == "ready"
    return snapshot_id


def _pseudonym(key: bytes, value: str) -> bytes:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()


def _rows(snapshot_id: str) -> dict[bytes, tuple[bool, str]]:
    table = pq.read_table(files.public_path(snapshot_id))
    assert table.schema.names == ["pseudonym", "allowed", "reason"]
    assert table.schema.field("pseudonym").type == pa.binary(32)
    return {
        p: (a, r)
        for p, a, r in zip(
            table["pseudonym"].to_pylist(),
            table["allowed"].to_pylist(),
            table["reason"].to_pylist(),
            strict=True,
        )
    }


def _detail(api: Api, snapshot_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/snapshots/{snapshot_id}")
    assert response.status_code == 200, response.content
    return dict(response.json())


def _ndjson(*pseudonyms: bytes) -> str:
    return "".join(json.dumps({"pseudonym": p.hex()}) + "\n" for p in pseudonyms)


def _usage(api: Api, snapshot_id: str, body: str, model: str = "churn-v1") -> Any:
    return api.post(
        f"/api/v1/snapshots/{snapshot_id}/usage?model={model}",
        raw=body,
        content_type="application/x-ndjson",
    )


# --- the file and its manifest --------------------------------------------------------------


def test_snapshot_lists_every_living_person_by_an_hmac_of_their_identifier(owner):
    _, api = owner
    _people()
    _erase("bob")
    snapshot_id = _create(api)
    body = _detail(api, snapshot_id)
    key = base64.b64decode(body["pseudonym_key"], validate=True)
    assert len(key) == 32 and body["pseudonym_key"].endswith("=")
    rows = _rows(snapshot_id)
    # Erased people have no identifier left, so they cannot be listed by it.
    assert rows == {
        _pseudonym(key, "ann"): (True, "granted"),
        _pseudonym(key, "cy"): (False, "refused"),
        _pseudonym(key, "dee"): (False, "no_consent"),
    }
    assert body["status"] == "ready"
    assert body["counts"] == {"allowed": 1, "denied": 2}
    assert body["default_allowed"] is False
    assert (body["namespace"], body["key"], body["purpose"]) == (
        "account",
        "identifier",
        "ml_training",
    )
    assert (
        body["file_sha256"]
        == hashlib.sha256(files.public_path(snapshot_id).read_bytes()).hexdigest()
    )


def test_the_manifest_signs_every_field_but_the_key_with_its_own_typ(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    body = _detail(api, snapshot_id)
    payload = jws_verify(body["manifest"], jwks(), typ=TYP_SNAPSHOT_MANIFEST)
    assert payload == {k: v for k, v in body.items() if k not in ("manifest", "pseudonym_key")}
    with pytest.raises(JwsInvalid):
        jws_verify(body["manifest"], jwks(), typ="consent-receipt+jwt")


def test_subject_key_snapshots_list_erased_people_denied(owner):
    _, api = owner
    _people()
    bob = _erase("bob")
    snapshot_id = _create(api, key="subject_key")
    key = base64.b64decode(_detail(api, snapshot_id)["pseudonym_key"])
    rows = _rows(snapshot_id)
    assert rows[_pseudonym(key, bob.key)] == (False, "erased")
    assert rows[_pseudonym(key, identity.subject_key("ann"))] == (True, "granted")
    assert len(rows) == 4


def test_two_snapshots_cannot_be_joined(owner):
    _, api = owner
    _people()
    first, second = _create(api), _create(api)
    assert not set(_rows(first)) & set(_rows(second))


def test_a_data_use_implies_its_purpose_and_a_basis_that_allows_strangers_says_so(owner):
    _, api = owner
    from consent.decisions.services import data_use_create

    data_use_create(key="fraud-model", name="Fraud", purpose_key="security", actor=SYSTEM)
    factories.record("ann", security=False)
    factories.record("bob", analytics=True)
    snapshot_id = _create(api, purpose=None, data_use="fraud-model")
    body = _detail(api, snapshot_id)
    assert (body["purpose"], body["data_use"], body["default_allowed"]) == (
        "security",
        "fraud-model",
        True,
    )
    assert body["counts"] == {"allowed": 1, "denied": 1}


def test_bad_requests_are_400s(owner):
    _, api = owner
    assert_error(api.post("/api/v1/snapshots", {}), 400, "invalid_request")
    assert_error(api.post("/api/v1/snapshots", {"purpose": "nope"}), 400, "unknown_purpose")
    assert_error(
        api.post("/api/v1/snapshots", {"purpose": "ml_training", "namespace": "device"}),
        400,
        "invalid_request",
    )
    factories.record("ann", analytics=True)
    from consent.decisions.services import data_use_create

    data_use_create(key="ads", name="Ads", purpose_key="analytics", actor=SYSTEM)
    assert_error(
        api.post("/api/v1/snapshots", {"purpose": "ml_training", "data_use": "ads"}),
        400,
        "data_use_purpose_mismatch",
    )
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert_error(
        api.post("/api/v1/snapshots", {"purpose": "ml_training", "as_of": future}),
        400,
        "invalid_request",
    )
    assert Snapshot.objects.count() == 0


def test_as_of_a_past_instant_replays_the_ledger(owner):
    _, api = owner
    past = timezone.now() - timedelta(days=2)
    services.consent_record(
        subject_id="old",
        decisions=[services.DecisionInput(purpose="ml_training", granted=True)],
        actor=SYSTEM,
        now=past,
    )
    factories.record("old", ml_training=False)
    then = _create(api, as_of=(past + timedelta(hours=1)).isoformat())
    now = _create(api)
    assert list(_rows(then).values()) == [(True, "granted")]
    assert list(_rows(now).values()) == [(False, "withdrawn")]


# --- who may read it ------------------------------------------------------------------------


def test_another_client_gets_404_and_admin_sees_metadata_only(owner):
    client, api = owner
    _people()
    snapshot_id = _create(api)
    pseudonym = next(iter(_rows(snapshot_id)))
    # Another key of the same client reads everything.
    same = Api(governance_services.api_key_issue(client=client))
    assert _detail(same, snapshot_id)["pseudonym_key"] is not None
    assert same.get(f"/api/v1/snapshots/{snapshot_id}/file").status_code == 200

    other = Api(factories.api_client(scopes=["checks"])[1])
    for response in (
        other.get(f"/api/v1/snapshots/{snapshot_id}"),
        other.get(f"/api/v1/snapshots/{snapshot_id}/file"),
        _usage(other, snapshot_id, _ndjson(pseudonym)),
        other.client.delete(
            f"/api/v1/snapshots/{snapshot_id}", headers={"Authorization": f"Bearer {other.key}"}
        ),
        other.get("/api/v1/snapshots/not-a-uuid"),
    ):
        assert_error(response, 404, "not_found")

    admin = Api(factories.api_client(scopes=["admin", "checks"])[1])
    body = _detail(admin, snapshot_id)
    assert body["pseudonym_key"] is None and body["status"] == "ready"
    jws_verify(body["manifest"], jwks(), typ=TYP_SNAPSHOT_MANIFEST)
    assert_error(admin.get(f"/api/v1/snapshots/{snapshot_id}/file"), 404, "not_found")
    assert Snapshot.objects.get(pk=snapshot_id).status == "ready"


def test_the_file_streams_as_parquet(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    response = api.get(f"/api/v1/snapshots/{snapshot_id}/file")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    data = b"".join(response.streaming_content)
    assert hashlib.sha256(data).hexdigest() == _detail(api, snapshot_id)["file_sha256"]
    assert pq.read_table(io.BytesIO(data)).num_rows == 4


# --- the end of a snapshot ------------------------------------------------------------------


def _destroyed(snapshot_id: str) -> bool:
    snapshot = Snapshot.objects.get(pk=snapshot_id)
    return (
        snapshot.status == "expired"
        and snapshot.pseudonym_key_encrypted is None
        and not files.snapshot_dir(snapshot_id).exists()
    )


def test_expiry_destroys_the_key_and_the_file_and_runs_twice(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    snapshot = Snapshot.objects.get(pk=snapshot_id)
    assert files.public_path(snapshot_id).is_file()
    assert snapshots.snapshots_expire(now=snapshot.expires_at - timedelta(seconds=1)) == 0
    # Past expires_at the API already answers expired, before the task runs.
    Snapshot.objects.filter(pk=snapshot_id).update(expires_at=timezone.now())
    body = _detail(api, snapshot_id)
    assert (body["status"], body["pseudonym_key"]) == ("expired", None)
    assert_error(api.get(f"/api/v1/snapshots/{snapshot_id}/file"), 409, "snapshot_not_ready")
    # The beat task itself, twice: the second run finds nothing left to do.
    assert snapshots_expire_task() == 1
    assert snapshots_expire_task() == 0
    assert _destroyed(snapshot_id)
    assert AuditEvent.objects.filter(action="snapshot.expire", target_id=snapshot_id).count() == 1


def test_delete_destroys_the_key_and_the_file(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    response = api.client.delete(
        f"/api/v1/snapshots/{snapshot_id}", headers={"Authorization": f"Bearer {api.key}"}
    )
    assert response.status_code == 204
    assert _destroyed(snapshot_id)
    assert _detail(api, snapshot_id)["status"] == "expired"
    assert Snapshot.objects.get(pk=snapshot_id).expires_at <= timezone.now()
    with pytest.raises(Exception, match="not ready"):
        pseudonym_key_of(Snapshot.objects.get(pk=snapshot_id))
    assert AuditEvent.objects.filter(action="snapshot.delete", target_id=snapshot_id).exists()


def test_expiry_removes_files_a_late_worker_wrote(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    api.client.delete(
        f"/api/v1/snapshots/{snapshot_id}", headers={"Authorization": f"Bearer {api.key}"}
    )
    files.part_write(snapshot_id, 0, files.PART_SCHEMA.empty_table())
    assert files.snapshot_dir(snapshot_id).exists()
    snapshots.snapshots_expire()
    assert not files.snapshot_dir(snapshot_id).exists()


# --- chunks ---------------------------------------------------------------------------------


def _snapshot(chunk_size: int, **kwargs: Any) -> Snapshot:
    return snapshots.snapshot_create(
        actor=SYSTEM, purpose_key="ml_training", chunk_size=chunk_size, **kwargs
    )


def test_several_chunks_give_the_same_content_as_one(purposes):
    for i in range(23):
        factories.record(f"p{i}", ml_training=i % 3 != 0)
    _erase("p4")
    at = timezone.now()
    one = _snapshot(1000, as_of=at)
    many = _snapshot(5, as_of=at)
    assert one.chunks.count() == 1 and many.chunks.count() == 5
    for snapshot in (one, many):
        snapshots.snapshot_build(snapshot_id=snapshot.id)

    def content(snapshot: Snapshot) -> list[tuple[Any, ...]]:
        key = pseudonym_key_of(snapshot)
        by_pseudonym = {_pseudonym(key, f"p{i}"): f"p{i}" for i in range(23)}
        table = pq.read_table(files.public_path(snapshot.id)).to_pylist()
        return sorted((by_pseudonym[r["pseudonym"]], r["allowed"], r["reason"]) for r in table)

    assert content(one) == content(many)
    assert len(content(one)) == 22
    one.refresh_from_db(), many.refresh_from_db()
    assert (one.allowed_count, one.denied_count) == (many.allowed_count, many.denied_count)


def test_a_chunk_of_a_dead_worker_is_taken_again_once_its_lease_lapses(purposes):
    for i in range(6):
        factories.record(f"q{i}", ml_training=True)
    snapshot = _snapshot(2)
    now = timezone.now()
    # A worker claimed the first range and died.
    SnapshotChunk.objects.filter(snapshot=snapshot, index=0).update(
        status="running", lease_until=now + timedelta(minutes=1)
    )
    assert snapshots.snapshot_build(snapshot_id=snapshot.id, now=now) == "waiting"
    assert snapshots.snapshots_resume(now=now) == 0  # someone holds a live lease
    later = now + timedelta(minutes=2)
    assert snapshots.snapshot_build(snapshot_id=snapshot.id, now=later) == "ready"
    snapshot.refresh_from_db()
    assert (snapshot.status, snapshot.allowed_count) == ("ready", 6)
    assert snapshots.snapshot_build(snapshot_id=snapshot.id, now=later) == "done"
    assert not (files.snapshot_dir(snapshot.id) / "parts").exists()


def test_an_empty_namespace_gives_an_empty_file(purposes):
    snapshot = _snapshot(10)
    assert snapshots.snapshot_build(snapshot_id=snapshot.id) == "ready"
    assert pq.read_table(files.public_path(snapshot.id)).num_rows == 0


def test_a_build_that_cannot_read_an_identifier_fails_and_destroys_the_key(purposes):
    factories.record("ann", ml_training=True)
    Subject.objects.update(identifier_encrypted=b"\x01garbage")
    snapshot = _snapshot(10)
    with pytest.raises(Exception, match=r"format|verify|configured"):
        snapshots.snapshot_build(snapshot_id=snapshot.id)
    snapshot.refresh_from_db()
    assert snapshot.status == "failed" and snapshot.pseudonym_key_encrypted is None
    assert snapshot.error


# --- the property: snapshots answer as the bulk check does ---------------------------------

_runs = itertools.count(1)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    actions=st.lists(
        st.sampled_from(["grant", "refuse", "withdraw", "none", "erase", "other"]),
        min_size=1,
        max_size=8,
    ),
    purpose=st.sampled_from(["ml_training", "security", "service"]),
    chunk_size=st.integers(min_value=1, max_value=5),
)
def test_snapshot_decisions_equal_the_bulk_checks_for_living_ids(
    purposes, actions, purpose, chunk_size
):
    run = next(_runs)
    ids = [f"h{run}-{i}" for i in range(len(actions))]
    for identifier, action in zip(ids, actions, strict=True):
        if action in ("grant", "refuse", "withdraw", "erase"):
            factories.record(identifier, **{purpose: action != "refuse", "analytics": True})
        if action == "withdraw":
            factories.record(identifier, **{purpose: False})
        if action == "other":
            factories.record(identifier, analytics=True)
        if action == "erase":
            _erase(identifier)
    snapshot = snapshots.snapshot_create(actor=SYSTEM, purpose_key=purpose, chunk_size=chunk_size)
    snapshots.snapshot_build(snapshot_id=snapshot.id)
    key = pseudonym_key_of(snapshot)
    rows = _rows(str(snapshot.id))
    living = [i for i, a in zip(ids, actions, strict=True) if a != "erase"]
    bulk = checks_run(actor=SYSTEM, rule=purpose_rule_get(purpose), ids=living)
    for identifier, verdict in zip(living, bulk.answers.verdicts, strict=True):
        found = rows.get(_pseudonym(key, identifier))
        if found is None:  # never seen by the service: the snapshot's default answers
            assert verdict.allowed == Snapshot.objects.get(pk=snapshot.id).default_allowed
        else:
            assert found == (verdict.allowed, verdict.reason), identifier


# --- usage ----------------------------------------------------------------------------------


def test_usage_of_allowed_people_records_lineage_and_drift_names_a_later_withdrawal(owner):
    _, api = owner
    _people()
    factories.record("eve", ml_training=True)
    snapshot_id = _create(api)
    key = base64.b64decode(_detail(api, snapshot_id)["pseudonym_key"])
    ann, eve = _pseudonym(key, "ann"), _pseudonym(key, "eve")
    response = _usage(api, snapshot_id, _ndjson(ann, eve, ann) + "\n")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["used"], body["unknown"], body["withdrawn_since"]) == (2, 0, 0)
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.mode, decision.model, decision.lineage, decision.status) == (
        "snapshot",
        "churn-v1",
        True,
        "complete",
    )
    assert decision.as_of == Snapshot.objects.get(pk=snapshot_id).as_of
    assert DecisionLineage.objects.filter(decision=decision).count() == 2
    listed = api.get("/api/v1/subjects/ann/decisions").json()["decisions"]
    assert [(d["decision_id"], d["model"], d["mode"]) for d in listed] == [
        (body["decision_id"], "churn-v1", "snapshot")
    ]
    assert api.get("/api/v1/subjects/cy/decisions").json()["decisions"] == []

    services.consent_withdraw(subject_id="eve", actor=SYSTEM)
    drift = api.get(f"/api/v1/decisions/{body['decision_id']}/drift").json()["drifted"]
    assert [(d["subject_id"], d["reason"]) for d in drift] == [("eve", "withdrawn")]
    again = _usage(api, snapshot_id, _ndjson(eve), model="churn-v2").json()
    assert again["withdrawn_since"] == 1


def test_usage_naming_a_denied_or_absent_person_records_nothing(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    key = base64.b64decode(_detail(api, snapshot_id)["pseudonym_key"])
    ann, cy = _pseudonym(key, "ann"), _pseudonym(key, "cy")
    stranger = _pseudonym(key, "never-seen")
    before = (Decision.objects.count(), DecisionLineage.objects.count())
    error = assert_error(_usage(api, snapshot_id, _ndjson(ann, cy)), 400, "denied_in_snapshot")
    assert error["error"]["detail"]["count"] == 1
    error = assert_error(
        _usage(api, snapshot_id, _ndjson(ann, stranger)), 400, "denied_in_snapshot"
    )
    assert error["error"]["detail"]["count"] == 1
    assert (Decision.objects.count(), DecisionLineage.objects.count()) == before


def test_absent_pseudonyms_are_unknown_when_strangers_are_allowed(owner):
    _, api = owner
    factories.record("ann", security=True)
    snapshot_id = _create(api, purpose="security")
    key = base64.b64decode(_detail(api, snapshot_id)["pseudonym_key"])
    upload = pa.table({"pseudonym": [_pseudonym(key, "ann").hex(), _pseudonym(key, "x").hex()]})
    sink = io.BytesIO()
    pq.write_table(upload, sink)
    response = api.post(
        f"/api/v1/snapshots/{snapshot_id}/usage?model=m",
        raw=sink.getvalue(),
        content_type="application/vnd.apache.parquet",
    )
    assert response.status_code == 201, response.content
    assert (response.json()["used"], response.json()["unknown"]) == (2, 1)


def test_usage_parquet_with_binary_pseudonyms(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    key = base64.b64decode(_detail(api, snapshot_id)["pseudonym_key"])
    sink = io.BytesIO()
    pq.write_table(pa.table({"pseudonym": pa.array([_pseudonym(key, "ann")], pa.binary())}), sink)
    response = api.post(
        f"/api/v1/snapshots/{snapshot_id}/usage?model=m",
        raw=sink.getvalue(),
        content_type="application/vnd.apache.parquet",
    )
    assert response.status_code == 201, response.content
    assert response.json()["used"] == 1


def test_bad_usage_uploads_are_refused(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    path = f"/api/v1/snapshots/{snapshot_id}/usage"
    assert_error(_usage(api, snapshot_id, '{"pseudonym": "ABC"}\n'), 400, "invalid_request")
    assert_error(_usage(api, snapshot_id, "not json\n"), 400, "invalid_request")
    assert_error(_usage(api, snapshot_id, _ndjson(b"\0" * 32), model=""), 400, "invalid_request")
    assert_error(
        api.post(
            f"{path}?model=m", raw=b"PAR1 nonsense", content_type="application/vnd.apache.parquet"
        ),
        400,
        "invalid_request",
    )
    assert_error(api.post(f"{path}?model=m", {"x": 1}), 415, "unsupported_media_type")
    assert_error(_usage(api, snapshot_id, "\n"), 400, "invalid_request")
    api.client.delete(
        f"/api/v1/snapshots/{snapshot_id}", headers={"Authorization": f"Bearer {api.key}"}
    )
    assert_error(_usage(api, snapshot_id, _ndjson(b"\0" * 32)), 409, "snapshot_not_ready")
    assert Decision.objects.count() == 0


# --- the embedded default -------------------------------------------------------------------

SQLITE_SCRIPT = """
from django.core.management import call_command

call_command("migrate", verbosity=0)

import pyarrow as pa

from consent.models import Decision, DecisionLineage, Snapshot
from consent.snapshots import services as snapshots
from consent.snapshots.keys import pseudonym_key_of
from consent.snapshots.usage import snapshot_usage_record
from consent.tasks import snapshots_expire_task
from consent.checks.inputs import SubjectHasher
from governance.actors import Actor
from tests import factories

factories.seed_purposes()
for name in ("ann", "bob", "cy"):
    factories.record(name, ml_training=name != "cy")
actor = Actor.system("test")
snapshot = snapshots.snapshot_create(actor=actor, purpose_key="ml_training", chunk_size=2)
assert snapshots.snapshot_build(snapshot_id=snapshot.id) == "ready"
snapshot.refresh_from_db()
assert (snapshot.allowed_count, snapshot.denied_count) == (2, 1)
used = pa.array(SubjectHasher(pseudonym_key_of(snapshot)).digests(["ann", "bob"]), pa.binary(32))
result = snapshot_usage_record(snapshot=snapshot, actor=actor, model="m", pseudonyms=used)
assert DecisionLineage.objects.filter(decision=result.decision).count() == 2
snapshots.snapshot_delete(snapshot=snapshot, actor=actor)
assert Snapshot.objects.get().pseudonym_key_encrypted is None
print("sqlite-snapshot-ok")
"""


@pytest.mark.slow
def test_snapshots_build_and_record_usage_on_sqlite(tmp_path: Any) -> None:
    assert "sqlite-snapshot-ok" in run_on_sqlite(tmp_path, SQLITE_SCRIPT)


# --- a skew report with the usage (consent bias) ---------------------------------------------

SKEW = {
    "allowed_rate": 0.5,
    "by": {
        "region": [
            {
                "value": "north",
                "suppressed": False,
                "candidates": 20,
                "allowed": 10,
                "allowed_rate": 0.5,
                "share_candidates": 1.0,
                "share_allowed": 1.0,
                "representation": 1.0,
                "weight": 1.0,
                "flag": False,
                "reasons": {"refused": 10},
            }
        ]
    },
}


def test_usage_keeps_a_skew_report_and_the_card_names_the_snapshot_file(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    key = base64.b64decode(_detail(api, snapshot_id)["pseudonym_key"])
    body = json.dumps({"skew": SKEW}) + "\n" + _ndjson(_pseudonym(key, "ann"))
    response = _usage(api, snapshot_id, body)
    assert response.status_code == 201, response.content
    decision_id = response.json()["decision_id"]
    assert Decision.objects.get(pk=decision_id).skew == SKEW
    card = api.get(f"/api/v1/decisions/{decision_id}/card").json()
    assert card["skew"] == SKEW and card["model"] == "churn-v1"
    assert card["snapshot"] == {
        "id": snapshot_id,
        "file_sha256": Snapshot.objects.get(pk=snapshot_id).file_sha256,
    }
    # The same report in a Parquet upload's schema metadata.
    table = pa.table({"pseudonym": pa.array([_pseudonym(key, "ann")], pa.binary(32))})
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({"consent.skew": json.dumps(SKEW)}), sink)
    response = api.post(
        f"/api/v1/snapshots/{snapshot_id}/usage?model=m",
        raw=sink.getvalue(),
        content_type="application/vnd.apache.parquet",
    )
    assert response.status_code == 201, response.content
    assert Decision.objects.get(pk=response.json()["decision_id"]).skew == SKEW


def test_usage_with_an_unsuppressed_skew_report_records_nothing(owner):
    _, api = owner
    _people()
    snapshot_id = _create(api)
    key = base64.b64decode(_detail(api, snapshot_id)["pseudonym_key"])
    small = json.loads(json.dumps(SKEW))
    small["by"]["region"][0]["candidates"] = 3  # a small group shown by itself
    body = json.dumps({"skew": small}) + "\n" + _ndjson(_pseudonym(key, "ann"))
    before = Decision.objects.count()
    assert_error(_usage(api, snapshot_id, body), 400, "invalid_skew")
    assert Decision.objects.count() == before
