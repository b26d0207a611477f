"""Withdrawal and erasure reach the lake: Delta tables (delta-rs) as retention targets, real
tables in tmp_path configured through the settings, every file decoded after an erasure."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from django.utils import timezone

from consent import identity, services
from consent.models import SubjectKeyChange
from consent.rectification import subject_rectify
from governance.actors import Actor
from governance.models import AuditEvent
from retention import selectors
from retention.models import ErasureRequest, PurgeRunItem, RequestStatus
from retention.registry import target_get
from retention.services import enforcement, holds, propagation, rights
from retention.targets.base import SubjectRef
from retention.tasks import external_tables_rekey_task, retention_enforce_task
from tests.retention.conftest import policy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from consent_client.delta import write_delta

pytestmark = pytest.mark.django_db(databases=["default", "features"])

STAFF = Actor.system("test")
# Erased through a merge against an Arrow table: were it spliced into a predicate, the
# quote would end the string and OR '1'='1 would match every row.
PERSON = "x' OR '1'='1"
# The person's rectified identifier: written into the rows as data too.
RECTIFIED = "z' OR '1'='1"
OTHERS = ["alice", "bob", "carol"]
TRAINING = "delta:training"  # keyed by the identifier, written by the client's helper
FEATURES = "delta:features"  # keyed by the subject key, written plainly (statistics on it)


def key(identifier: str) -> str:
    return identity.subject_key(identifier)


@pytest.fixture
def lake(settings: Any, tmp_path: Path, now: datetime) -> dict[str, Path]:
    """Two Delta tables, each written in three commits (so several files and versions), the
    person in each commit, and both registered as retention targets."""
    paths = {"training": tmp_path / "training", "features": tmp_path / "features"}
    settings.LAKEHOUSE_VACUUM_HOURS = 0
    settings.RETENTION_LAKEHOUSE_TABLES = [
        {
            "name": "training",
            "uri": str(paths["training"]),
            "id_column": "user_id",
            "id_kind": "identifier",
            "timestamp_column": "event_time",
            "purposes": ["ml_training"],
        },
        {
            "name": "features",
            "uri": str(paths["features"]),
            "id_column": "subject_key",
            "id_kind": "subject_key",
            "timestamp_column": "created_at",
            "purposes": ["analytics"],
        },
    ]
    for days_ago, other in zip((400, 10, 1), OTHERS, strict=True):
        at = now - timedelta(days=days_ago)
        write_delta(
            str(paths["training"]),
            pa.table(
                {
                    "user_id": [PERSON, other],
                    "event_time": pa.array([at, at], pa.timestamp("us", tz="UTC")),
                    "label": [1.0, 0.0],
                }
            ),
            id_column="user_id",
        )
        write_deltalake(
            str(paths["features"]),
            pa.table(
                {
                    "subject_key": [key(PERSON), key(other)],
                    "created_at": pa.array([at, at], pa.timestamp("us", tz="UTC")),
                    "f": [0.5, 0.25],
                }
            ),
            mode="append",
        )
    return paths


def ids(path: Path, column: str, version: int | None = None) -> list[str]:
    table = DeltaTable(str(path), version=version) if version is not None else DeltaTable(str(path))
    return sorted(table.to_pyarrow_table().column(column).to_pylist())


def traces(path: Path, *needles: str) -> list[str]:
    """Every file under the table's directory that holds a needle: Parquet files (data and
    checkpoints) decoded, values and footer statistics, and every file's raw bytes."""
    found = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        texts = [file.read_bytes().decode("utf-8", "replace")]
        if file.suffix == ".parquet":
            parquet = pq.ParquetFile(file)
            texts.append(json.dumps(parquet.read().to_pylist(), default=str))
            meta = parquet.metadata
            for group in range(meta.num_row_groups):
                for col in range(meta.num_columns):
                    stats = meta.row_group(group).column(col).statistics
                    if stats is not None and stats.has_min_max:
                        texts.append(f"{stats.min!r} {stats.max!r}")
        if any(needle in text for needle in needles for text in texts):
            found.append(str(file.relative_to(path)))
    return found


def erase(subject_id: str, *, now: datetime | None = None) -> ErasureRequest:
    request = rights.erasure_request_create(subject_id=subject_id, actor=STAFF)
    return rights.erasure_execute(request_id=request.pk, now=now)


def test_erasure_merges_ids_as_data_and_the_rest_of_the_table_survives(purposes, lake):
    services.consent_record(
        subject_id=PERSON, decisions=[services.DecisionInput("ml_training", True)], actor=STAFF
    )
    done = erase(PERSON)
    assert done.status == RequestStatus.COMPLETE
    assert ids(lake["training"], "user_id") == OTHERS
    assert ids(lake["features"], "subject_key") == sorted(key(o) for o in OTHERS)
    progress = done.progress["targets"]
    assert progress[TRAINING]["status"] == "done" and progress[TRAINING]["removed"] == 3
    assert progress[FEATURES]["removed"] == 3
    # The merges rewrote and the vacuum deleted the files that held the person.
    assert progress[TRAINING]["files_removed"] == 3 and progress[FEATURES]["files_removed"] == 3
    assert selectors.erasure_targets_done(done)[TRAINING] == {"done": True}


def test_erasure_leaves_no_trace_in_any_file_under_the_tables(purposes, lake):
    needles = (PERSON, key(PERSON))
    # Before: the data files hold the person, and the plainly written table's log holds
    # the subject key as a min/max statistic (the helper's table keeps none for its ids).
    assert any(f.endswith(".parquet") for f in traces(lake["training"], *needles))
    assert any(f.startswith("_delta_log/") for f in traces(lake["features"], *needles))
    assert not any(f.startswith("_delta_log/") for f in traces(lake["training"], *needles))
    erase(PERSON)
    assert traces(lake["training"], *needles) == []
    assert traces(lake["features"], *needles) == []
    # Everyone else is still there, in files and in the log.
    assert traces(lake["training"], "alice") and traces(lake["features"], key("alice"))


def test_time_travel_to_an_earlier_version_no_longer_returns_the_person(purposes, lake):
    before = DeltaTable(str(lake["training"])).version()
    assert PERSON in ids(lake["training"], "user_id", version=before)
    erase(PERSON)
    for path, column, needle in (
        (lake["training"], "user_id", PERSON),
        (lake["features"], "subject_key", key(PERSON)),
    ):
        for version in range(DeltaTable(str(path)).version() + 1):
            try:
                found = ids(path, column, version=version)
            except Exception:  # noqa: S112 - the version's log or files are gone: also fine
                continue
            assert needle not in found, (path.name, version)


def test_erasure_is_done_only_after_the_vacuum_delay(purposes, lake, settings, now):
    settings.LAKEHOUSE_VACUUM_HOURS = 24
    services.consent_record(
        subject_id=PERSON, decisions=[services.DecisionInput("analytics", True)], actor=STAFF
    )
    request = erase(PERSON, now=now)
    # Rows gone at once; their old files wait for readers already under way.
    assert ids(lake["training"], "user_id") == OTHERS
    assert any(f.endswith(".parquet") for f in traces(lake["training"], PERSON))
    assert request.status == RequestStatus.PENDING
    assert request.progress["targets"][TRAINING]["status"] == "settling"
    done = selectors.erasure_targets_done(request)
    assert done[TRAINING] == done[FEATURES] == {"done": False}
    assert done["governance.AuditEvent"] == {"done": True}
    # Everything else is erased meanwhile: the ledger, the identifier.
    assert request.identifier_encrypted is None and request.tombstone_id is not None

    later = rights.erasure_execute(request_id=request.pk, now=now + timedelta(hours=23))
    assert later.status == RequestStatus.PENDING
    assert later.progress["targets"][TRAINING]["status"] == "settling"
    # The sweeper queues it again meanwhile.
    assert str(request.pk) in rights.rights_requests_sweep(now=now + timedelta(hours=23))["erasure"]

    finished = rights.erasure_execute(request_id=request.pk, now=now + timedelta(hours=25))
    assert finished.status == RequestStatus.COMPLETE
    assert finished.progress["targets"][TRAINING] == {
        "status": "done",
        "removed": 3,
        "files_removed": 3,
    }
    assert traces(lake["training"], PERSON, key(PERSON)) == []
    assert traces(lake["features"], PERSON, key(PERSON)) == []
    assert all(state["done"] for state in selectors.erasure_targets_done(finished).values())
    # Run once more: nothing changes.
    again = rights.erasure_execute(request_id=request.pk, now=now + timedelta(days=2))
    assert again.status == RequestStatus.COMPLETE and again.progress == finished.progress


def test_withdrawal_reaches_only_the_tables_serving_the_purpose(purposes, lake):
    policy(TRAINING, days=3650)
    policy(FEATURES, days=3650)
    services.consent_record(
        subject_id=PERSON,
        decisions=[
            services.DecisionInput("ml_training", True),
            services.DecisionInput("analytics", True),
        ],
        actor=STAFF,
    )
    services.consent_withdraw(subject_id=PERSON, actor=STAFF, purposes=["ml_training"])
    assert propagation.withdrawals_propagate(now=timezone.now() + timedelta(minutes=2)) == 1
    assert ids(lake["training"], "user_id") == OTHERS
    assert key(PERSON) in ids(lake["features"], "subject_key")

    services.consent_withdraw(subject_id=PERSON, actor=STAFF, purposes=["analytics"])
    assert propagation.withdrawals_propagate(now=timezone.now() + timedelta(minutes=2)) == 1
    assert ids(lake["features"], "subject_key") == sorted(key(o) for o in OTHERS)
    # The next enforcement run (the delay being zero here) deletes the old files.
    run = enforcement.retention_enforce().run
    assert run.files_removed >= 6
    assert traces(lake["training"], PERSON) == [] and traces(lake["features"], key(PERSON)) == []


def test_policy_purges_rows_older_than_the_period_by_the_timestamp_column(
    purposes, lake, now, no_accountability_minimum
):
    policy(TRAINING, days=30)
    holds.hold_place(reason="litigation", actor=STAFF, subject_id="alice")
    run = enforcement.retention_enforce(now=now).run
    item = PurgeRunItem.objects.get(run=run, target=TRAINING)
    # 400 days old: the person's and alice's rows; alice is held.
    assert (item.examined, item.held, item.removed) == (2, 1, 1)
    assert item.files_removed == 1 and run.files_removed == 1
    assert ids(lake["training"], "user_id") == sorted([PERSON, PERSON, "alice", "bob", "carol"])

    # Idempotent: the same run again finds nothing more to remove or delete.
    again = enforcement.retention_enforce(now=now).run
    item = PurgeRunItem.objects.get(run=again, target=TRAINING)
    assert (item.examined, item.held, item.removed, item.files_removed) == (1, 1, 0, 0)
    retention_enforce_task.apply()
    assert ids(lake["training"], "user_id") == sorted([PERSON, PERSON, "alice", "bob", "carol"])


def test_dry_run_counts_and_changes_nothing(purposes, lake, now):
    policy(FEATURES, days=30)
    run = enforcement.retention_enforce(now=now, dry_run=True).run
    item = PurgeRunItem.objects.get(run=run, target=FEATURES)
    assert (item.examined, item.removed, item.files_removed) == (2, 2, 0)
    assert len(ids(lake["features"], "subject_key")) == 6


def test_access_export_and_a_table_nobody_wrote_yet(purposes, lake, settings, tmp_path):
    rows = target_get(TRAINING).subject_rows(  # type: ignore[union-attr]
        SubjectRef(key=key(PERSON))  # no identifier at hand: matched by hashing ids
    )
    assert [r["user_id"] for r in rows] == [PERSON] * 3
    settings.RETENTION_LAKEHOUSE_TABLES = [
        {
            "name": "empty",
            "uri": str(tmp_path / "never-written"),
            "id_column": "user_id",
            "id_kind": "identifier",
            "timestamp_column": "event_time",
        }
    ]
    done = erase(PERSON)
    assert done.status == RequestStatus.COMPLETE
    assert done.progress["targets"]["delta:empty"] == {
        "status": "done",
        "removed": 0,
        "files_removed": 0,
    }


def test_write_delta_keeps_no_statistics_for_the_id_column(tmp_path):
    path = tmp_path / "t"
    write_deltalake(str(path), pa.table({"user_id": ["dan"], "score": [1]}))  # plainly first
    write_delta(str(path), pa.table({"user_id": ["eve"], "score": [2]}), id_column="user_id")
    table = DeltaTable(str(path))
    assert table.metadata().configuration["delta.dataSkippingStatsColumns"] == "score"
    log = [
        json.loads(line)["add"]
        for entry in sorted((path / "_delta_log").glob("*.json"))
        for line in entry.read_text().splitlines()
        if '"add"' in line
    ]
    stats = [json.loads(add["stats"]) for add in log]
    # The plain write kept the id's min/max; the helper's write keeps the score's only.
    assert stats[0]["minValues"] == {"user_id": "dan", "score": 1}
    assert stats[1]["minValues"] == {"score": 2}
    footer = pq.ParquetFile(path / log[1]["path"]).metadata.row_group(0)
    by_name = {footer.column(i).path_in_schema: footer.column(i) for i in range(2)}
    assert by_name["user_id"].statistics is None or not by_name["user_id"].statistics.has_min_max
    assert by_name["score"].statistics.has_min_max
    with pytest.raises(ValueError):
        write_delta(str(path), pa.table({"score": [3]}), id_column="user_id")


# --- rectification ------------------------------------------------------------------------


def rectify(subject_id: str, new_subject_id: str) -> SubjectKeyChange:
    subject_rectify(
        subject_id=subject_id, namespace="account", new_subject_id=new_subject_id, actor=STAFF
    )
    return SubjectKeyChange.objects.get(new_key=key(new_subject_id))


def id_statistics(path: Path, column: str, needle: str) -> list[bool]:
    """For each live data file holding `needle` in `column`: whether its footer keeps min/max
    statistics for the column."""
    table = DeltaTable(str(path))
    found = []
    for name in table.file_uris():
        parquet = pq.ParquetFile(name)
        if needle not in parquet.read(columns=[column]).column(column).to_pylist():
            continue
        meta = parquet.metadata
        for group in range(meta.num_row_groups):
            chunk = meta.row_group(group).column(parquet.schema_arrow.get_field_index(column))
            found.append(chunk.statistics is not None and chunk.statistics.has_min_max)
    return found


def test_rectification_renames_the_person_in_both_tables_and_nobody_else(purposes, lake):
    services.consent_record(
        subject_id=PERSON, decisions=[services.DecisionInput("analytics", True)], actor=STAFF
    )
    before = DeltaTable(str(lake["features"])).to_pyarrow_table().to_pylist()
    change = rectify(PERSON, RECTIFIED)
    # Three rows in each table; the second run finds nothing left under the old name.
    assert external_tables_rekey_task(change.pk) == 6
    assert external_tables_rekey_task(change.pk) == 0

    # Both ids are quotes-and-OR strings: merged as data, they matched the person's rows only.
    assert ids(lake["training"], "user_id") == sorted([*OTHERS, RECTIFIED, RECTIFIED, RECTIFIED])
    assert ids(lake["features"], "subject_key") == sorted(
        [*(key(o) for o in OTHERS), *[key(RECTIFIED)] * 3]
    )
    # Only the id changed: every other value of every row is as it was.
    after = DeltaTable(str(lake["features"])).to_pyarrow_table().to_pylist()
    renamed = {key(PERSON): key(RECTIFIED)}
    expected = [
        {**r, "subject_key": renamed.get(r["subject_key"], r["subject_key"])} for r in before
    ]
    assert sorted(after, key=str) == sorted(expected, key=str)
    # The files the merges wrote keep no statistics for the id column.
    assert set(id_statistics(lake["features"], "subject_key", key(RECTIFIED))) == {False}
    assert set(id_statistics(lake["training"], "user_id", RECTIFIED)) == {False}
    # Recorded once, keys only, per target.
    audit = AuditEvent.objects.get(action="retention.subject_rekey")
    assert audit.detail == {
        "subject_key": key(RECTIFIED),
        "old_subject_key": key(PERSON),
        "rekeyed": {TRAINING: 3, FEATURES: 3},
    }


def test_after_rectification_export_and_withdrawal_find_the_person_by_the_new_name(purposes, lake):
    policy(FEATURES, days=3650)
    services.consent_record(
        subject_id=PERSON, decisions=[services.DecisionInput("analytics", True)], actor=STAFF
    )
    external_tables_rekey_task(rectify(PERSON, RECTIFIED).pk)
    training = target_get(TRAINING)
    assert training is not None
    rows = training.subject_rows(SubjectRef(key=key(RECTIFIED)))
    assert [r["user_id"] for r in rows] == [RECTIFIED] * 3
    assert training.subject_rows(SubjectRef(key=key(PERSON))) == []

    services.consent_withdraw(subject_id=RECTIFIED, actor=STAFF, purposes=["analytics"])
    assert propagation.withdrawals_propagate(now=timezone.now() + timedelta(minutes=2)) == 1
    assert ids(lake["features"], "subject_key") == sorted(key(o) for o in OTHERS)


def test_the_old_name_leaves_storage_at_the_next_settle(purposes, lake, now):
    services.consent_record(
        subject_id=PERSON, decisions=[services.DecisionInput("analytics", True)], actor=STAFF
    )
    external_tables_rekey_task(rectify(PERSON, RECTIFIED).pk)
    # Until the vacuum, the replaced files (and log statistics) still hold the old name.
    assert traces(lake["training"], PERSON) != []
    assert traces(lake["features"], key(PERSON)) != []
    for name in (TRAINING, FEATURES):
        target = target_get(name)
        assert target is not None and target.settle(now=now) == 3
    assert traces(lake["training"], PERSON) == [] and traces(lake["features"], key(PERSON)) == []
    assert ids(lake["training"], "user_id").count(RECTIFIED) == 3


def test_rectification_through_the_api_then_the_task_reaches_the_lake(purposes, lake, api):
    services.consent_record(
        subject_id=PERSON, decisions=[services.DecisionInput("ml_training", True)], actor=STAFF
    )
    response = api.post(
        f"/api/v1/subjects/{quote(PERSON, safe='')}/identifier", {"new_subject_id": RECTIFIED}
    )
    assert response.status_code == 200, response.content
    change = SubjectKeyChange.objects.get(old_key=key(PERSON))
    assert external_tables_rekey_task(change.pk) == 6
    assert external_tables_rekey_task(change.pk) == 0
    assert ids(lake["training"], "user_id").count(RECTIFIED) == 3
    # Erasure by the new identifier now reaches every row, in both tables.
    assert erase(RECTIFIED).status == RequestStatus.COMPLETE
    assert ids(lake["training"], "user_id") == OTHERS
    assert ids(lake["features"], "subject_key") == sorted(key(o) for o in OTHERS)


def test_a_table_keyed_by_the_identifier_needs_the_new_identifier(purposes, lake):
    training = target_get(TRAINING)
    assert training is not None
    ref = SubjectRef(key=key(PERSON))
    with pytest.raises(ValueError, match="new one"):
        training.subject_rekey(ref, new_key=key(RECTIFIED))
    with pytest.raises(ValueError, match="new one"):  # an identifier the key is not the hash of
        training.subject_rekey(ref, new_key=key(RECTIFIED), new_identifier="someone-else")
    assert ids(lake["training"], "user_id").count(PERSON) == 3
