"""Small-count suppression for aggregate reports: one rule for every report that counts people.

A count under the threshold reads "<10" and any rate built on such a count is null. Rows
(buckets, cells) with fewer events than the threshold are merged into one row marked
`suppressed`, whose counts and rates follow the same rule: a report answers no grand total,
so no difference between what it shows reveals a small row. The consent-rates report uses it
(consent.reports); a later skew report suppresses its cells the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

THRESHOLD = 10
SMALL = f"<{THRESHOLD}"


@dataclass(frozen=True)
class Rate:
    """`name` = sum(numerator counts) / sum(denominator counts), rounded to 4 places."""

    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]

    @property
    def built_on(self) -> set[str]:
        return {*self.numerator, *self.denominator}


def _rate(row: Mapping[str, Any], rate: Rate, threshold: int) -> float | None:
    values = [row[field] for field in rate.built_on]
    if any(v is None or v < threshold for v in values):
        return None
    denominator = sum(row[field] for field in rate.denominator)
    return round(sum(row[field] for field in rate.numerator) / denominator, 4)


def _public(
    row: Mapping[str, Any],
    *,
    counts: Sequence[str],
    rates: Sequence[Rate],
    threshold: int,
    suppressed: bool,
) -> dict[str, Any]:
    shown: dict[str, Any] = dict(row)
    for rate in rates:
        shown[rate.name] = _rate(row, rate, threshold)
    for field in counts:
        value = row[field]
        if value is not None and value < threshold:
            shown[field] = f"<{threshold}"
    shown["suppressed"] = suppressed
    return shown


def suppress_small(
    rows: Iterable[Mapping[str, Any]],
    *,
    key: str,
    counts: Sequence[str],
    size: Sequence[str],
    rates: Sequence[Rate] = (),
    threshold: int = THRESHOLD,
) -> list[dict[str, Any]]:
    """`rows` of raw counts (int, or None for "not counted here") ready to publish.

    A row whose `size` counts sum below `threshold` is not shown by itself: all such rows are
    summed into one `{key: None, "suppressed": True, ...}` row placed last. Then, in every
    row, each of `counts` under the threshold becomes "<threshold" and each rate built on one
    is None. Other fields of a shown row pass through; a merged row keeps only its counts.
    """
    shown: list[dict[str, Any]] = []
    small: list[Mapping[str, Any]] = []
    for row in rows:
        if sum(row[field] or 0 for field in size) < threshold:
            small.append(row)
        else:
            shown.append(
                _public(row, counts=counts, rates=rates, threshold=threshold, suppressed=False)
            )
    if small:
        merged: dict[str, Any] = {key: None}
        for field in counts:
            values = [row[field] for row in small if row[field] is not None]
            merged[field] = sum(values) if values else None
        shown.append(
            _public(merged, counts=counts, rates=rates, threshold=threshold, suppressed=True)
        )
    return shown
