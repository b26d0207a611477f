"""consent.skew, the pure consent-skew report: the shared test vectors, the synthetic
population of the issue's "Done when" at 100,000 people, and the limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consent.skew import AttributesInvalid, SkewInvalid, SkewTally, skew_of, skew_validate
from tests.consent import population

VECTORS = Path(__file__).resolve().parents[2] / "clients/python/tests/skew_vectors.json"


def vector_cases() -> list[dict]:
    return json.loads(VECTORS.read_text())["cases"]


def expand(records: list[dict]) -> list[tuple]:
    return [
        (r["attributes"], r["allowed"], r["reason"]) for r in records for _ in range(r["count"])
    ]


@pytest.mark.parametrize("case", vector_cases(), ids=lambda c: c["name"])
def test_the_service_gives_the_shared_vectors(case):
    assert skew_of(expand(case["records"])) == case["report"]


def test_vectors_hand_checked_band_edges_are_inside():
    (case,) = [c for c in vector_cases() if c["name"] == "band edges are inside"]
    rows = {r["value"]: r for r in case["report"]["by"]["g"]}
    # g=low: 20 of 50 allowed, 50 of 100 overall: (20/50) / (50/100) = 0.8 exactly.
    assert rows["low"]["representation"] == 0.8 and rows["low"]["flag"] is False
    assert rows["low"]["weight"] == 1.25 and rows["high"]["representation"] == 1.2


def test_population_of_100000_matches_the_analytic_representation():
    people = population.people(100_000)
    report = skew_of(
        (attrs, consents, "granted" if consents else "refused") for attrs, consents in people
    )
    analytic = population.representation()
    for (name, value), expected in analytic.items():
        (row,) = [r for r in report["by"][name] if r["value"] == value]
        assert abs(row["representation"] - expected) <= 0.02, (name, value, row)
        assert row["flag"] is not (0.8 <= expected <= 1.25), (name, value)
    assert {k for k, v in analytic.items() if not 0.8 <= v <= 1.25} == {("age_band", "40-59")}
    assert_weights_restore_candidates(report)


def assert_weights_restore_candidates(report: dict) -> None:
    """Weighting each allowed person by their cell's weight gives back, for every attribute,
    the candidates' distribution (to 1e-9)."""
    for rows in report["by"].values():
        weighted = {r["value"]: r["allowed"] * r["weight"] for r in rows}
        total = sum(weighted.values())
        for row in rows:
            assert abs(weighted[row["value"]] / total - row["share_candidates"]) < 1e-9
        assert abs(sum(r["share_candidates"] for r in rows) - 1) < 1e-9


def test_a_name_first_given_late_counts_earlier_candidates_under_null():
    tally = SkewTally()
    tally.register_absent(12)
    for _ in range(12):
        tally.register({"region": "north"})
    tally.decide_many([(True, "granted")] * 24)
    (north, missing) = tally.report()["by"]["region"]
    assert (north["value"], north["candidates"]) == ("north", 12)
    assert (missing["value"], missing["candidates"], missing["suppressed"]) == (None, 12, False)


@pytest.mark.parametrize(
    ("attributes", "limit"),
    [
        ({f"n{i}": "v" for i in range(6)}, "names"),
        ({"x" * 33: "v"}, "name_length"),
        ({"": "v"}, "name_length"),
        ({"band": "v" * 65}, "value_length"),
        ({"band": 42}, "value_length"),
        ({"band": ["a"]}, "value_length"),
        (["band"], "shape"),
    ],
)
def test_attributes_beyond_the_limits_are_refused(attributes, limit):
    with pytest.raises(AttributesInvalid) as caught:
        SkewTally().register(attributes)
    assert caught.value.detail["limit"] == limit


def test_at_most_fifty_distinct_values_per_name():
    tally = SkewTally()
    for i in range(50):
        tally.register({"band": f"v{i}"})
    tally.register({"band": None})  # null is not a value
    tally.register({"band": "v0"})
    with pytest.raises(AttributesInvalid) as caught:
        tally.register({"band": "v50"})
    assert caught.value.detail == {"limit": "values", "max": 50}


def test_small_values_are_never_echoed():
    records = [({"town": f"hamlet-{i}"}, True, "granted") for i in range(30)]
    report = skew_of(records)
    assert "hamlet" not in json.dumps(report)
    (row,) = report["by"]["town"]
    assert row["suppressed"] and row["candidates"] == 30 and row["value"] is None


def test_every_vector_report_passes_validation():
    for case in vector_cases():
        assert skew_validate(case["report"]) == case["report"]


def _tampered(change) -> dict:
    (case,) = [c for c in vector_cases() if c["name"].startswith("two attributes")]
    report = json.loads(json.dumps(case["report"]))
    change(report)
    return report


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["by"]["band"][0].update(candidates=5),  # a small row shown by itself
        lambda r: r["by"]["band"][0].update(candidates="<10"),
        lambda r: r["by"]["band"][3].update(value="60+"),  # a suppressed value echoed
        lambda r: r["by"]["band"][0]["reasons"].update(refused=3),
        lambda r: r["by"]["band"][0].update(extra=1),
        lambda r: r["by"]["band"].reverse(),  # the suppressed row not last
        lambda r: r["by"]["band"].append(dict(r["by"]["band"][0])),  # a value twice
        lambda r: r["by"].update({f"n{i}": [] for i in range(5)}),
        lambda r: r.update(total=3),
        lambda r: r["by"]["band"][0].update(flag="yes"),
        lambda r: r["by"]["band"][0].update(weight=True),
    ],
)
def test_reports_not_published_by_these_rules_are_refused(change):
    with pytest.raises(SkewInvalid):
        skew_validate(_tampered(change))
