"""Small-count suppression for aggregate reports: one rule for every report that counts people.

A count under the threshold reads "<10" and any rate built on such a count is null. Rows
(buckets, cells) with fewer events than the threshold are merged into one row marked
`suppressed`, whose counts and rates follow the same rule: a report answers no grand total,
so no difference between what it shows reveals a small row. The consent-rates report uses it
(consent.reports); a later skew report suppresses its cells the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

THRESHOLD = 10
SMALL = f"<{THRESHOLD}"


@dataclass(frozen=True)
class Rate:
    """`name` = sum(numerator counts) / sum(denominator counts), rounded to `digits` places.

    With `product`, the counts are multiplied instead (a ratio of shares, such as
    (a / A) / (n / N), is a * N / (A * n): exact integers, one division). `digits=None`
    keeps the full float. The fields may be the row's counts or the report's `totals`.
    """

    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    digits: int | None = 4
    product: bool = False

    @property
    def built_on(self) -> set[str]:
        return {*self.numerator, *self.denominator}


def _combine(values: list[int], product: bool) -> int:
    if not product:
        return sum(values)
    result = 1
    for value in values:
        result *= value
    return result


def _rate(row: Mapping[str, Any], rate: Rate, threshold: int) -> float | None:
    values = [row[field] for field in rate.built_on]
    if any(v is None or v < threshold for v in values):
        return None
    numerator = _combine([row[field] for field in rate.numerator], rate.product)
    value = numerator / _combine([row[field] for field in rate.denominator], rate.product)
    return value if rate.digits is None else round(value, rate.digits)


def rate_published(
    counts: Mapping[str, Any], rate: Rate, *, threshold: int = THRESHOLD
) -> float | None:
    """One rate over `counts` outside any row (a report's overall rate), by the same rule:
    None when any count it is built on is under the threshold."""
    return _rate(counts, rate, threshold)


def _small(value: Any, threshold: int) -> Any:
    """A count as published: "<threshold" under it; a mapping of named counts (per reason,
    say) has each of its counts published so."""
    if isinstance(value, Mapping):
        return {name: _small(count, threshold) for name, count in value.items()}
    if value is not None and value < threshold:
        return f"<{threshold}"
    return value


def counts_published(counts: Mapping[str, int], *, threshold: int = THRESHOLD) -> dict[str, Any]:
    """Named counts outside any row (a decision's denied reasons): each under the threshold
    reads "<threshold"."""
    return dict(_small(counts, threshold))


def _sum(values: list[Any]) -> Any:
    if values and all(isinstance(v, Mapping) for v in values):
        merged: dict[str, int] = {}
        for value in values:
            for name, count in value.items():
                merged[name] = merged.get(name, 0) + count
        return dict(sorted(merged.items()))
    return sum(values) if values else None


def _public(
    row: Mapping[str, Any],
    *,
    counts: Sequence[str],
    rates: Sequence[Rate],
    threshold: int,
    suppressed: bool,
    totals: Mapping[str, int],
    derive: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None,
) -> dict[str, Any]:
    shown: dict[str, Any] = dict(row)
    raw = {**totals, **row}
    for rate in rates:
        shown[rate.name] = _rate(raw, rate, threshold)
    if derive is not None:
        shown.update(derive(raw))
    for field in counts:
        shown[field] = _small(row[field], threshold)
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
    totals: Mapping[str, int] | None = None,
    derive: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`rows` of raw counts (int, a mapping of named ints, or None for "not counted here")
    ready to publish.

    A row whose `size` counts sum below `threshold` is not shown by itself: all such rows are
    summed into one `{key: None, "suppressed": True, ...}` row placed last. Then, in every
    row, each of `counts` under the threshold (each count of a mapping too) becomes
    "<threshold" and each rate built on one is None; rates may also name report-wide
    `totals` (never shown here), held to the same rule. `derive` adds fields computed from a
    row's exact counts that reveal no count (a flag, say). Other fields of a shown row pass
    through; a merged row keeps only its counts.
    """
    totals = totals or {}
    shown: list[dict[str, Any]] = []
    small: list[Mapping[str, Any]] = []
    for row in rows:
        if sum(row[field] or 0 for field in size) < threshold:
            small.append(row)
        else:
            shown.append(
                _public(
                    row,
                    counts=counts,
                    rates=rates,
                    threshold=threshold,
                    suppressed=False,
                    totals=totals,
                    derive=derive,
                )
            )
    if small:
        merged: dict[str, Any] = {key: None}
        for field in counts:
            merged[field] = _sum([row[field] for row in small if row[field] is not None])
        shown.append(
            _public(
                merged,
                counts=counts,
                rates=rates,
                threshold=threshold,
                suppressed=True,
                totals=totals,
                derive=derive,
            )
        )
    return shown
