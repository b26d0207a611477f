"""governance.suppression: the one small-count rule shared by the aggregate reports."""

from __future__ import annotations

from governance.suppression import Rate, suppress_small

RATE = Rate("rate", numerator=("yes",), denominator=("yes", "no"))


def rows(*counts: tuple[str, int, int, int | None]) -> list[dict]:
    return [{"cell": c, "yes": y, "no": n, "extra": e} for c, y, n, e in counts]


def publish(data: list[dict]) -> list[dict]:
    return suppress_small(
        data, key="cell", counts=("yes", "no", "extra"), size=("yes", "no"), rates=[RATE]
    )


def test_counts_under_ten_read_as_small_and_their_rates_are_null() -> None:
    (row,) = publish(rows(("a", 30, 9, None)))
    assert row == {
        "cell": "a", "yes": 30, "no": "<10", "extra": None, "rate": None, "suppressed": False
    }  # fmt: skip


def test_rates_use_the_raw_counts() -> None:
    (row,) = publish(rows(("a", 30, 10, 12)))
    assert (row["rate"], row["extra"]) == (0.75, 12)


def test_small_rows_merge_last_and_keep_only_sums() -> None:
    published = publish(rows(("a", 3, 4, 1), ("b", 50, 50, 0), ("c", 6, 2, None)))
    assert [r["cell"] for r in published] == ["b", None]
    assert published[1] == {
        "cell": None, "yes": "<10", "no": "<10", "extra": "<10", "rate": None, "suppressed": True
    }  # fmt: skip


def test_a_merged_row_shows_sums_of_ten_or_more() -> None:
    published = publish(rows(("a", 5, 4, None), ("b", 6, 3, None)))
    assert published == [
        {"cell": None, "yes": 11, "no": "<10", "extra": None, "rate": None, "suppressed": True}
    ]


def test_nothing_in_nothing_out() -> None:
    assert publish([]) == []
