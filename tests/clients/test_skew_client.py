"""consent_client.skew, the client's mirror of the consent-skew report: the same test
vectors as the service (tests/consent/test_skew.py), and the pandas path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.consent import population
from tests.consent.test_skew import assert_weights_restore_candidates, expand, vector_cases

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from consent_client import skew


@pytest.mark.parametrize("case", vector_cases(), ids=lambda c: c["name"])
def test_the_client_gives_the_shared_vectors(case):
    assert skew.report_of(expand(case["records"])) == case["report"]


def test_the_client_matches_the_analytic_population():
    people = population.people(100_000)
    report = skew.report_of(
        (attrs, consents, "granted" if consents else "refused") for attrs, consents in people
    )
    for (name, value), expected in population.representation().items():
        (row,) = [r for r in report["by"][name] if r["value"] == value]
        assert abs(row["representation"] - expected) <= 0.02
    assert_weights_restore_candidates(report)


def test_limits_mirror_the_service():
    with pytest.raises(ValueError, match="at most 5"):
        skew.report_of([({f"n{i}": "v" for i in range(6)}, True, "granted")])
    with pytest.raises(ValueError, match="at most 50"):
        skew.report_of([({"n": f"v{i}"}, True, "granted") for i in range(51)])


def test_frame_cells_become_strings_or_null():
    import math

    assert [skew.attribute_value(v) for v in (3, "a", None, math.nan, 2.5)] == [
        "3", "a", None, None, "2.5"
    ]  # fmt: skip
