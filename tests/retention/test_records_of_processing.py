"""The Art. 30 records of processing name the retention that applies to each data use."""

from __future__ import annotations

import csv
import io

import pytest

from consent.decisions import services as decision_services
from governance.actors import Actor

pytestmark = pytest.mark.django_db(databases=["default", "features"])


def test_export_names_the_retention_of_each_data_use(api, purposes):
    decision_services.data_use_create(
        key="churn-model",
        name="Churn model",
        purpose_key="ml_training",
        owner="ml-team",
        actor=Actor.system("test"),
    )
    rows = api.get("/api/v1/data-uses/export", format="json").json()["records_of_processing"]
    retention = rows[0]["retention"]
    assert retention and all({"target", "keep_for_days", "action"} <= set(r) for r in retention)
    text = api.get("/api/v1/data-uses/export", format="csv").content.decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert "keep_for_days=" in row["retention"]
