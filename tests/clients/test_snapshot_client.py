"""The Python client's snapshots against a real gunicorn and a real Celery worker: the
pseudonyms it computes are the service's, it refuses a tampered file or manifest, and the
pandas filter and usage report leave lineage."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from consent.checks.inputs import SubjectHasher
from consent.models import Decision, DecisionLineage, Subject
from governance.signing import TYP_CONSENT_RECEIPT, jws_sign
from tests import factories, live
from tests.live_gunicorn import gunicorn_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from consent_client import (
    BadRequest,
    ConsentClient,
    SnapshotVerificationError,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[str]:
    # Web streams what the worker writes: one directory for both, gone after the tests.
    snapshot_dir = str(tmp_path_factory.mktemp("snapshots"))
    with (
        django_db_blocker.unblock(),
        gunicorn_server(env={"SNAPSHOT_DIR": snapshot_dir}) as base,
        live.celery_worker(SNAPSHOT_DIR=snapshot_dir),
    ):
        yield base


def _seed() -> str:
    factories.seed_purposes()
    for name in ("ann", "bob"):
        factories.record(name, ml_training=True)
    factories.record("cy", ml_training=False)
    factories.record("dee", analytics=True)
    _, key = factories.api_client(scopes=["checks"])
    return key


class Tampering(requests.Session):
    """A session that lets a test change what the service answered."""

    def __init__(self, change: Any) -> None:
        super().__init__()
        self.change = change

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        self.change(method, url, response)
        return response


def _client(server: str, key: str, change: Any = None) -> ConsentClient:
    session = Tampering(change or (lambda *a: None))
    return ConsentClient(server, key, retries=1, backoff=0, session=session)


def test_pseudonyms_match_the_service_and_filter_pandas_keeps_the_allowed_rows(server):
    client = _client(server, _seed())
    df = pd.DataFrame(
        {
            "user_id": ["ann", "bob", "cy", "dee", "zed", None, "ann"],
            "x": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    with client.snapshot(purpose="ml_training") as snap:
        assert snap.default_allowed is False and snap.counts == {"allowed": 2, "denied": 2}
        key = snap._key
        assert snap.pseudonyms(["ann", "é'\" x"]) == SubjectHasher(key).digests(["ann", "é'\" x"])
        rows = pq.read_table(snap.path).to_pylist()
        allowed = {r["pseudonym"] for r in rows if r["allowed"]}
        assert allowed == set(SubjectHasher(key).digests(["ann", "bob"]))

        used = snap.filter_pandas(df, "user_id")
        assert used["x"].tolist() == [1, 2, 7]
        decision_id = snap.record_usage(used, "user_id", model="churn-v1")
        assert snap.last_usage is not None and snap.last_usage["used"] == 2
        decision = Decision.objects.get(pk=decision_id)
        assert (decision.mode, decision.model) == ("snapshot", "churn-v1")
        lineage = DecisionLineage.objects.filter(decision=decision).values_list(
            "subject__key", flat=True
        )
        assert set(lineage) == set(
            Subject.objects.filter(key__in=SubjectHasher().many(["ann", "bob"])).values_list(
                "key", flat=True
            )
        )
        with pytest.raises(BadRequest) as refused:
            snap.record_usage(df, "user_id", model="churn-v1")
        assert refused.value.code == "denied_in_snapshot"
        path = Path(snap.path)
    assert not path.exists()


def _file_flip(method: str, url: str, response: Any) -> None:
    if url.endswith("/file"):
        data = bytearray(response.content)
        data[len(data) // 2] ^= 1
        response.iter_content = lambda chunk_size=1: iter([bytes(data)])


def _json_change(edit: Any) -> Any:
    def change(method: str, url: str, response: Any) -> None:
        if method == "GET" and "/api/v1/snapshots/" in url and not url.endswith("/file"):
            body = response.json()
            if body["status"] == "ready":
                edit(body)
                response._content = json.dumps(body).encode()

    return change


def _signature_broken(body: dict[str, Any]) -> None:
    head, payload, signature = body["manifest"].split(".")
    body["manifest"] = f"{head}.{payload}.{signature[::-1]}"


def _counts_changed(body: dict[str, Any]) -> None:
    body["counts"]["allowed"] += 1


def _hash_changed_everywhere(body: dict[str, Any]) -> None:
    body["file_sha256"] = "0" * 64  # the manifest no longer says what the API says


def _another_typ(body: dict[str, Any]) -> None:
    fields = {k: v for k, v in body.items() if k not in ("manifest", "pseudonym_key")}
    body["manifest"] = jws_sign(fields, typ=TYP_CONSENT_RECEIPT)


@pytest.mark.parametrize(
    "change",
    [
        _file_flip,
        _json_change(_signature_broken),
        _json_change(_counts_changed),
        _json_change(_hash_changed_everywhere),
        _json_change(_another_typ),
    ],
    ids=["file", "signature", "fields", "hash", "typ"],
)
def test_a_tampered_file_or_manifest_is_refused(server, change):
    client = _client(server, _seed(), change)
    with pytest.raises(SnapshotVerificationError):
        client.snapshot(purpose="ml_training")


def test_snapshot_skew_equals_the_services_and_the_usage_card_verifies(server):
    key = _seed()
    people = [f"p{i}" for i in range(120)]
    for i, person in enumerate(people):
        if i % 4:
            factories.record(person, ml_training=True)
        elif i % 8 == 0:
            factories.record(person, ml_training=False)
    df = pd.DataFrame(
        {
            "user_id": [*people, "zed", None],
            "region": [
                ("isle" if i < 5 else ["north", "south", "east"][i % 3]) for i in range(122)
            ],
            "band": [("a" if i % 2 else float("nan")) for i in range(122)],
        }
    )
    client = _client(server, key)
    rows = df[df["user_id"].notna()]
    attributes = {
        r.user_id: {"region": r.region, "band": r.band} for r in rows.itertuples(index=False)
    }
    service = client.check(rows["user_id"].tolist(), "ml_training", attributes=attributes).skew
    assert service is not None and service["by"]["region"][-1]["suppressed"]
    with client.snapshot(purpose="ml_training") as snap:
        report = snap.skew(df, "user_id", by=["region", "band"])
        assert report == service  # the same numbers, to the last bit
        used = snap.filter_pandas(df, "user_id")
        decision_id = snap.record_usage(used, "user_id", model="churn-v2", skew=report)
        card = snap.card()
        assert card["decision_id"] == decision_id and card["skew"] == report
        assert card["snapshot"]["file_sha256"] == snap.info["file_sha256"]
        assert card["model"] == "churn-v2"
    assert client.card(decision_id)["counts"]["allowed"] == len(set(used["user_id"]))

    def forge(method: str, url: str, response: Any) -> None:
        if url.endswith("/card"):
            body = response.json()
            body["counts"]["allowed"] += 1
            response._content = json.dumps(body).encode()

    with pytest.raises(SnapshotVerificationError):
        _client(server, key, forge).card(decision_id)
