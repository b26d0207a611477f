"""A training pipeline's whole consent loop on a local Spark, against a running service.

    CONSENT_URL=http://127.0.0.1:8000 CONSENT_API_KEY=sk_... \
        python examples/pipeline/train_with_consent.py --table var/lake/training

1. People decide (the script records their consent here, as the product would).
2. The training table is written as a Delta table with `consent_client.delta.write_delta`
   (no statistics on the id column), the table the service knows through
   `RETENTION_LAKEHOUSE_TABLES`.
3. The pipeline takes a signed snapshot, filters the table with it in Spark, "trains", and
   records what it used: a decision with lineage.
4. One person withdraws; the decision's drift names them.
5. Another is erased; the service deletes their rows from the Delta table.

The key needs the scopes `checks`, `consent:write` and `rights`. The service must be
started with the table registered (see docs/lakehouse.md, "A pipeline, end to end"):

    RETENTION_LAKEHOUSE_TABLES='[{"name": "training", "uri": "<abs path of --table>",
      "id_column": "user_id", "id_kind": "identifier", "timestamp_column": "event_at",
      "purposes": ["ml_training"]}]'  LAKEHOUSE_VACUUM_HOURS=0

(0 hours only for the demo: by default the erasure waits a day before vacuuming old files.)
Needs the client with its extras: pip install './clients/python[spark,delta]'.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    from consent_client import ConsentClient
except ImportError:  # run from a checkout without installing the client
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
    from consent_client import ConsentClient

import pyarrow as pa
import requests
from consent_client.delta import write_delta
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

PURPOSE = "ml_training"


def say(text: str) -> None:
    print(text, flush=True)


class Service:
    """The calls other systems make (the product records consent, support handles a
    withdrawal, the privacy team an erasure): plain HTTP with the same key."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(method, self.url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def consent(self, subject_id: str, granted: bool) -> None:
        decision = {"purpose": PURPOSE, "granted": granted}
        body = {"subject_id": subject_id, "decisions": [decision], "indication_method": "checkbox"}
        self.call("POST", "/api/v1/consents", body)


def write_training_table(uri: str, people: dict[str, str]) -> None:
    """Three rows a person, in the table the service knows."""
    now = datetime.now(UTC)
    ids = [person for person in people.values() for _ in range(3)]
    write_delta(
        uri,
        pa.table(
            {
                "user_id": ids,
                "event_at": pa.array(
                    [now - timedelta(days=i % 3) for i in range(len(ids))],
                    pa.timestamp("us", tz="UTC"),
                ),
                "x": [float(i) for i in range(len(ids))],
                "label": [i % 2 for i in range(len(ids))],
            }
        ),
        id_column="user_id",
        mode="overwrite",
    )


def read_table(spark: Any, uri: str) -> Any:
    """Spark reads the Delta table through deltalake and Arrow (no Delta jars needed)."""
    return spark.createDataFrame(DeltaTable(uri).to_pyarrow_table())


def wait_for_erasure(service: Service, request_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (status := service.call("GET", f"/api/v1/erasure-requests/{request_id}")["status"]) != (
        "complete"
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"the erasure is still {status} after {timeout} s")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CONSENT_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("CONSENT_API_KEY"))
    parser.add_argument("--table", default="var/lake/training", help="the Delta table's path")
    parser.add_argument("--model", default="churn-demo")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if not args.api_key:
        parser.error("set CONSENT_API_KEY or pass --api-key")
    uri = str(Path(args.table).resolve())
    client = ConsentClient(args.url, args.api_key)
    service = Service(args.url, args.api_key)
    run = secrets.token_hex(3)  # fresh people each run
    people = {name: f"demo-{run}-{name}" for name in ("ann", "bob", "cy", "dee", "eve", "fay")}
    names = {person: name for name, person in people.items()}

    for name in ("ann", "bob", "cy", "dee"):
        service.consent(people[name], granted=True)
    service.consent(people["eve"], granted=False)  # fay never decided: the service never saw her
    write_training_table(uri, people)
    say(f"1. consents recorded; training table written at {uri}")

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("consent-pipeline-example")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        table = read_table(spark, uri)
        with client.snapshot(purpose=PURPOSE) as snap:
            train = snap.filter_spark(table, "user_id").cache()
            used = sorted(names[r.user_id] for r in train.select("user_id").distinct().collect())
            say(f"2. snapshot {snap.id}: training on {train.count()} rows of {', '.join(used)}")
            # Training itself is out of scope: a mean per label stands in for the model.
            train.groupBy("label").agg(F.avg("x")).collect()
            decision_id = snap.record_usage(train, "user_id", model=args.model)
            say(f"3. usage recorded: decision {decision_id} ({snap.last_usage})")

        withdrawal = {"purposes": [PURPOSE]}
        service.call("POST", f"/api/v1/subjects/{people['bob']}/withdrawals", withdrawal)
        drifted = sorted(
            names.get(d["subject_id"], d["subject_id"]) for d in client.drift(decision_id)
        )
        say(f"4. bob withdrew; the decision's drift names: {', '.join(drifted)}")
        if drifted != ["bob"]:
            raise SystemExit("drift should name bob alone")

        erasure = service.call("POST", "/api/v1/erasure-requests", {"subject_id": people["ann"]})
        wait_for_erasure(service, erasure["id"], args.timeout)
        left = read_table(spark, uri).select("user_id").distinct().collect()
        remaining = sorted(names[r.user_id] for r in left)
        say(f"5. ann erased; people left in the Delta table: {', '.join(remaining)}")
        if "ann" in remaining:
            raise SystemExit("ann's rows are still in the Delta table")
    finally:
        spark.stop()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
