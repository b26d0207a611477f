"""The consent-skew report computed locally: who a consent filter leaves out, per attribute
value, as the service reports it for checks with attributes.

A mirror of the service's definitions (consent/skew.py and governance/suppression.py there);
both are held to the same test vectors (clients/python/tests/skew_vectors.json), so the
numbers are identical for the same input. Per attribute and value: candidates n, allowed a
(of N and A overall); allowed_rate = a/n, share_candidates = n/N, share_allowed = a/A,
representation = a*N/(A*n), weight = n*A/(N*a), flag = representation outside [0.8, 1.25],
and the denied candidates' reasons. Values with fewer than 10 candidates merge into one
suppressed row (value null); counts under 10 read "<10" and rates built on them are null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

THRESHOLD = 10
SMALL = f"<{THRESHOLD}"
MAX_NAMES = 5
MAX_NAME_LENGTH = 32
MAX_VALUE_LENGTH = 64
MAX_VALUES = 50

# (name, numerator fields, denominator fields, multiply instead of add)
_RATES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], bool], ...] = (
    ("allowed_rate", ("allowed",), ("candidates",), False),
    ("share_candidates", ("candidates",), ("all_candidates",), False),
    ("share_allowed", ("allowed",), ("all_allowed",), False),
    ("representation", ("allowed", "all_candidates"), ("all_allowed", "candidates"), True),
    ("weight", ("candidates", "all_allowed"), ("all_candidates", "allowed"), True),
)
FIELDS = (
    "value",
    "suppressed",
    "candidates",
    "allowed",
    "allowed_rate",
    "share_candidates",
    "share_allowed",
    "representation",
    "weight",
    "flag",
    "reasons",
)

# cells[name][value] = (candidates, allowed, {reason of the denied: count})
Cells = Mapping[str, Mapping["str | None", "tuple[int, int, Mapping[str, int]]"]]


def _combine(values: list[int], product: bool) -> int:
    if not product:
        return sum(values)
    result = 1
    for value in values:
        result *= value
    return result


def _rate(
    counts: Mapping[str, Any], numerator: Sequence[str], denominator: Sequence[str], product: bool
) -> float | None:
    if any(counts[f] is None or counts[f] < THRESHOLD for f in {*numerator, *denominator}):
        return None
    top = _combine([counts[f] for f in numerator], product)
    return top / _combine([counts[f] for f in denominator], product)


def _small(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {name: _small(count) for name, count in value.items()}
    return SMALL if value is not None and value < THRESHOLD else value


def _flag(n: int, a: int, total_n: int, total_a: int) -> bool | None:
    if not n or not total_a:
        return None
    ratio, base = a * total_n, total_a * n
    return not (ratio * 5 >= base * 4 and ratio * 4 <= base * 5)


def _published(row: dict[str, Any], totals: dict[str, int], suppressed: bool) -> dict[str, Any]:
    counts = {**totals, **row}
    out: dict[str, Any] = {
        "value": row["value"],
        "suppressed": suppressed,
        "candidates": _small(row["candidates"]),
        "allowed": _small(row["allowed"]),
    }
    for name, numerator, denominator, product in _RATES:
        out[name] = _rate(counts, numerator, denominator, product)
    out["flag"] = _flag(
        row["candidates"], row["allowed"], totals["all_candidates"], totals["all_allowed"]
    )
    out["reasons"] = _small(row["reasons"])
    return {key: out[key] for key in FIELDS}


def report(*, candidates: int, allowed: int, cells: Cells) -> dict[str, Any]:
    """The published report from exact counts."""
    totals = {"all_candidates": candidates, "all_allowed": allowed}
    by: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(cells):
        shown: list[dict[str, Any]] = []
        small: list[dict[str, Any]] = []
        ordered = sorted(cells[name].items(), key=lambda item: (item[0] is None, item[0] or ""))
        for value, (n, a, reasons) in ordered:
            row: dict[str, Any] = {
                "value": value,
                "candidates": n,
                "allowed": a,
                "reasons": dict(sorted(reasons.items())),
            }
            if n < THRESHOLD:
                small.append(row)
            else:
                shown.append(_published(row, totals, suppressed=False))
        if small:
            merged_reasons: dict[str, int] = {}
            for row in small:
                for reason, count in row["reasons"].items():
                    merged_reasons[reason] = merged_reasons.get(reason, 0) + count
            merged = {
                "value": None,
                "candidates": sum(row["candidates"] for row in small),
                "allowed": sum(row["allowed"] for row in small),
                "reasons": dict(sorted(merged_reasons.items())),
            }
            shown.append(_published(merged, totals, suppressed=True))
        by[name] = shown
    overall = _rate(totals, ("all_allowed",), ("all_candidates",), False)
    return {"allowed_rate": overall, "by": by}


def attribute_value(value: Any) -> str | None:
    """How a cell of a data frame becomes an attribute value: missing (None, NaN, NaT,
    pandas' NA) is null, anything else its str()."""
    if value is None:
        return None
    try:
        if value != value:  # NaN and NaT are not equal to themselves
            return None
    except (TypeError, ValueError):  # pandas' NA refuses to be a truth value
        return None
    return str(value)


def _check_limits(columns: Mapping[str, Sequence[str | None]]) -> None:
    if len(columns) > MAX_NAMES:
        raise ValueError(f"at most {MAX_NAMES} attributes")
    for name, values in columns.items():
        if not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise ValueError(f"attribute names are 1 to {MAX_NAME_LENGTH} characters: {name!r}")
        distinct = {v for v in values if v is not None}
        if len(distinct) > MAX_VALUES:
            raise ValueError(f"at most {MAX_VALUES} distinct values per attribute ({name!r})")
        if any(len(v) > MAX_VALUE_LENGTH for v in distinct):
            raise ValueError(f"attribute values are up to {MAX_VALUE_LENGTH} characters ({name!r})")


def report_of_groups(
    names: Sequence[str], groups: Iterable[tuple[Sequence[str | None], bool, str, int]]
) -> dict[str, Any]:
    """The report for candidates given as counted groups: each group's values of `names`
    (in that order), its verdict and reason, and how many candidates it holds. An engine
    that counts where the data lies (Spark's groupBy) sends only these."""
    rows = list(groups)
    _check_limits({name: [values[i] for values, *_ in rows] for i, name in enumerate(names)})
    cells: dict[str, dict[str | None, tuple[int, int, dict[str, int]]]] = {}
    found: dict[str, dict[str | None, list[Any]]] = {name: {} for name in names}
    candidates = allowed = 0
    for values, ok, reason, count in rows:
        candidates += count
        allowed += count if ok else 0
        for name, value in zip(names, values, strict=True):
            cell = found[name].setdefault(value, [0, 0, {}])
            cell[0] += count
            if ok:
                cell[1] += count
            else:
                cell[2][reason] = cell[2].get(reason, 0) + count
    for name in names:
        cells[name] = {value: (c[0], c[1], c[2]) for value, c in found[name].items()}
    return report(candidates=candidates, allowed=allowed, cells=cells)


def report_of_columns(
    columns: Mapping[str, Sequence[str | None]],
    allowed: Sequence[bool],
    reasons: Sequence[str],
) -> dict[str, Any]:
    """The report for candidates given column-wise: each attribute's values, each
    candidate's verdict and reason, all of one length."""
    names = list(columns)
    values = zip(*(columns[name] for name in names), strict=True) if names else [()] * len(allowed)
    counted = Counter(zip(values, allowed, reasons, strict=True))
    return report_of_groups(names, [(v, ok, r, n) for (v, ok, r), n in counted.items()])


def report_of(
    records: Iterable[tuple[Mapping[str, str | None] | None, bool, str]],
) -> dict[str, Any]:
    """The report of (attributes, allowed, reason) records, one per candidate; a name a
    candidate does not give counts under the value null."""
    rows = list(records)
    names: list[str] = []
    for attributes, _, _ in rows:
        names.extend(n for n in (attributes or {}) if n not in names)
    columns = {name: [(a or {}).get(name) for a, _, _ in rows] for name in names}
    return report_of_columns(columns, [r[1] for r in rows], [r[2] for r in rows])
