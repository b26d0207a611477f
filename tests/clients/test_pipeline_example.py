"""The pipeline example (examples/pipeline/), run as written against gunicorn and a real
Celery worker, with its Delta table registered: snapshot, Spark filter, usage, a withdrawal
the drift names, an erasure that empties the person's rows from the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from consent.models import Decision, DecisionLineage
from tests import factories, live
from tests.live_gunicorn import gunicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "pipeline" / "train_with_consent.py"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: Any) -> Path:
    return tmp_path_factory.mktemp("lake") / "training"


@pytest.fixture(scope="module")
def server(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any, lake: Path
) -> Iterator[str]:
    env = {
        "SNAPSHOT_DIR": str(tmp_path_factory.mktemp("snapshots")),
        "RETENTION_LAKEHOUSE_TABLES": json.dumps(
            [
                {
                    "name": "training",
                    "uri": str(lake),
                    "id_column": "user_id",
                    "id_kind": "identifier",
                    "timestamp_column": "event_at",
                    "purposes": ["ml_training"],
                }
            ]
        ),
        "LAKEHOUSE_VACUUM_HOURS": "0",
        # The test settings' external table lives in a database only the retention tests
        # set up: these servers know the lake table alone.
        "RETENTION_EXTERNAL_DATABASES": "",
        "RETENTION_EXTERNAL_TABLES": "[]",
    }
    with (
        django_db_blocker.unblock(),
        gunicorn_server(env=env) as base,
        live.celery_worker(**env),
    ):
        yield base


def test_the_pipeline_example_runs_the_whole_loop(server, lake):
    factories.seed_purposes()
    _, key = factories.api_client(scopes=["checks", "consent:write", "rights"])
    env = {**os.environ, "CONSENT_URL": server, "CONSENT_API_KEY": key}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--table", str(lake), "--timeout", "120"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert any("training on 12 rows of ann, bob, cy, dee" in line for line in lines), lines
    assert any("drift names: bob" in line for line in lines), lines
    assert lines[-1] == "done", lines

    decision = Decision.objects.get(model="churn-demo")
    assert decision.mode == "snapshot"
    # ann's lineage went with her erasure; bob, cy and dee are still there.
    assert DecisionLineage.objects.filter(decision=decision).count() == 3
    left = set(DeltaTable(str(lake)).to_pyarrow_table()["user_id"].to_pylist())
    assert left and not any(person.endswith("-ann") for person in left)
