"""Consent skew: who a consent filter leaves out, per attribute value, reported as an
aggregate only (the definitions live here and nowhere else in the service).

Per attribute and value: candidates n, allowed a (of N candidates and A allowed overall);
`allowed_rate` = a / n, `share_candidates` = n / N, `share_allowed` = a / A,
`representation` = share_allowed / share_candidates = a * N / (A * n), `weight` =
share_candidates / share_allowed = n * A / (N * a) (null when nobody in the cell is allowed),
`flag` = representation outside [0.8, 1.25] (the four-fifths rule as a band), and the
denied candidates' `reasons`. Small cells are suppressed by governance.suppression.

Pure (no Django): the Python client mirrors it (consent_client/skew.py), and both are held
to clients/python/tests/skew_vectors.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from governance.suppression import SMALL, THRESHOLD, Rate, rate_published, suppress_small

MAX_NAMES = 5
MAX_NAME_LENGTH = 32
MAX_VALUE_LENGTH = 64
MAX_VALUES = 50
# The band [LOW, HIGH] as integer ratios, so a flag never hangs on a float's last bit.
LOW = (4, 5)
HIGH = (5, 4)

TOTALS = ("all_candidates", "all_allowed")
COUNTS = ("candidates", "allowed", "reasons")
ALLOWED_RATE = Rate("allowed_rate", ("allowed",), ("candidates",), digits=None)
RATES = (
    ALLOWED_RATE,
    Rate("share_candidates", ("candidates",), ("all_candidates",), digits=None),
    Rate("share_allowed", ("allowed",), ("all_allowed",), digits=None),
    Rate(
        "representation",
        ("allowed", "all_candidates"),
        ("all_allowed", "candidates"),
        digits=None,
        product=True,
    ),
    Rate(
        "weight",
        ("candidates", "all_allowed"),
        ("all_candidates", "allowed"),
        digits=None,
        product=True,
    ),
)
OVERALL_RATE = Rate("allowed_rate", ("all_allowed",), ("all_candidates",), digits=None)
# The fields of a published row, in order.
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


@dataclass
class Cell:
    """The candidates holding one value of one attribute."""

    candidates: int = 0
    allowed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # of the denied ones


def _flag(row: Mapping[str, Any]) -> dict[str, bool | None]:
    """Outside the band, from the exact counts (a flag reveals no count); None when the
    representation has no meaning (nobody in the cell, or nobody allowed at all)."""
    n, a = row["candidates"], row["allowed"]
    total_n, total_a = row["all_candidates"], row["all_allowed"]
    if not n or not total_a:
        return {"flag": None}
    # representation = a*N / (A*n); inside iff LOW <= it <= HIGH.
    ratio, base = a * total_n, total_a * n
    inside = ratio * LOW[1] >= base * LOW[0] and ratio * HIGH[1] <= base * HIGH[0]
    return {"flag": not inside}


def _value_order(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def skew_report(
    *, candidates: int, allowed: int, cells: Mapping[str, Mapping[str | None, Cell]]
) -> dict[str, Any]:
    """The published report from exact counts: `cells[name][value]` (None: not given)."""
    totals = {"all_candidates": candidates, "all_allowed": allowed}
    by: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(cells):
        rows = [
            {
                "value": value,
                "candidates": cell.candidates,
                "allowed": cell.allowed,
                "reasons": dict(sorted(cell.reasons.items())),
            }
            for value, cell in sorted(cells[name].items(), key=lambda item: _value_order(item[0]))
        ]
        published = suppress_small(
            rows,
            key="value",
            counts=COUNTS,
            size=("candidates",),
            rates=RATES,
            totals=totals,
            derive=_flag,
        )
        by[name] = [{key: row[key] for key in FIELDS} for row in published]
    return {"allowed_rate": rate_published(totals, OVERALL_RATE), "by": by}


def skew_of(records: Iterable[tuple[Mapping[str, str | None] | None, bool, str]]) -> dict[str, Any]:
    """The report of (attributes, allowed, reason) records, one per candidate: the plain
    reading of the definitions, which the test vectors state."""
    tally = SkewTally()
    outcomes = []
    for attributes, allowed, reason in records:
        tally.register(attributes)
        outcomes.append((allowed, reason))
    tally.decide_many(outcomes)
    return tally.report()


class AttributesInvalid(ValueError):
    """Attributes beyond the limits, or not names to string values."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


def _name_check(name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise AttributesInvalid(
            f"Attribute names are strings of 1 to {MAX_NAME_LENGTH} characters.",
            limit="name_length",
            max=MAX_NAME_LENGTH,
        )


class SkewTally:
    """Counts a check's candidates by attribute value, in bounded form.

    `register` takes each candidate's attributes in order (checking the limits) and keeps
    only one byte per attribute per candidate: the value's index in this object's memory.
    `decide` then takes the verdicts in the same order. Nothing here is ever written out;
    `report` gives the published aggregate.
    """

    def __init__(self) -> None:
        self._codes: dict[str, bytearray] = {}
        self._values: dict[str, dict[str | None, int]] = {}
        self._outcomes = bytearray()
        self._outcome_codes: dict[tuple[bool, str], int] = {}
        self._registered = 0
        # Whether anyone gave attributes (a stream reports skew only then).
        self.seen = False

    def register(self, attributes: Any) -> None:
        if attributes is None:
            attributes = {}
        if not isinstance(attributes, dict):
            raise AttributesInvalid(
                "attributes must be an object of names to values.", limit="shape"
            )
        for name in attributes:
            if name not in self._codes:
                _name_check(name)
                if len(self._codes) >= MAX_NAMES:
                    raise AttributesInvalid(
                        f"At most {MAX_NAMES} attribute names.", limit="names", max=MAX_NAMES
                    )
                # Earlier candidates did not give it: code 0, the value null.
                self._codes[name] = bytearray(self._registered)
                self._values[name] = {None: 0}
        for name, codes in self._codes.items():
            value = attributes.get(name)
            values = self._values[name]
            code = values.get(value) if value is None or isinstance(value, str) else None
            if code is None:
                if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
                    raise AttributesInvalid(
                        f"Attribute values are strings of up to {MAX_VALUE_LENGTH} characters "
                        "(or null).",
                        limit="value_length",
                        max=MAX_VALUE_LENGTH,
                    )
                if len(values) > MAX_VALUES:  # null is not counted
                    raise AttributesInvalid(
                        f"At most {MAX_VALUES} distinct values per attribute.",
                        limit="values",
                        max=MAX_VALUES,
                    )
                code = values[value] = len(values)
            codes.append(code)
        self._registered += 1

    def register_absent(self, count: int) -> None:
        """`count` candidates without attributes (null for every name)."""
        for codes in self._codes.values():
            codes.extend(bytes(count))
        self._registered += count

    def decide(self, allowed: bool, reason: str) -> None:
        """The verdict on the next registered candidate."""
        self.decide_many([(allowed, reason)])

    def decide_many(self, verdicts: Iterable[tuple[Any, ...]]) -> None:
        """The verdicts, (allowed, reason, ...) each, on the next registered candidates."""
        codes = self._outcome_codes
        append = self._outcomes.append
        for verdict in verdicts:
            key = (verdict[0], verdict[1])
            code = codes.get(key)
            if code is None:
                code = codes[key] = len(codes)
            append(code)

    def report(self) -> dict[str, Any]:
        if len(self._outcomes) != self._registered:
            raise ValueError("every registered candidate needs its verdict")
        outcomes = {code: key for key, code in self._outcome_codes.items()}
        per_outcome = Counter(self._outcomes)
        candidates = self._registered
        allowed = sum(n for code, n in per_outcome.items() if outcomes[code][0])
        cells: dict[str, dict[str | None, Cell]] = {}
        for name, codes in self._codes.items():
            values = {code: value for value, code in self._values[name].items()}
            found: dict[str | None, Cell] = {}
            for (value_code, outcome_code), count in Counter(
                zip(codes, self._outcomes, strict=True)
            ).items():
                cell = found.setdefault(values[value_code], Cell())
                is_allowed, reason = outcomes[outcome_code]
                cell.candidates += count
                if is_allowed:
                    cell.allowed += count
                else:
                    cell.reasons[reason] = cell.reasons.get(reason, 0) + count
            cells[name] = found
        return skew_report(candidates=candidates, allowed=allowed, cells=cells)


# --- reports computed elsewhere (the client's, for snapshot filters) ------------------------


class SkewInvalid(ValueError):
    """A report that is not one this module publishes (shape, limits or suppression)."""


def _count_ok(value: Any, *, shown: bool) -> bool:
    if value == SMALL:
        return not shown
    return isinstance(value, int) and not isinstance(value, bool) and value >= THRESHOLD


def _rate_ok(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    )


def _row_check(name: str, row: Any) -> None:
    if not isinstance(row, dict) or set(row) != set(FIELDS):
        raise SkewInvalid(f"each row of {name!r} has exactly the fields {', '.join(FIELDS)}")
    suppressed, value = row["suppressed"], row["value"]
    if not isinstance(suppressed, bool) or (suppressed and value is not None):
        raise SkewInvalid(f"a suppressed row of {name!r} has the value null")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH):
        raise SkewInvalid(f"values of {name!r} are strings of up to {MAX_VALUE_LENGTH} characters")
    # A row shown by itself holds at least THRESHOLD candidates; any count may read "<10".
    if not _count_ok(row["candidates"], shown=not suppressed) or not _count_ok(
        row["allowed"], shown=False
    ):
        raise SkewInvalid(f'counts of {name!r} are integers of {THRESHOLD} or more, or "{SMALL}"')
    reasons = row["reasons"]
    if not isinstance(reasons, dict) or not all(
        isinstance(k, str) and len(k) <= MAX_VALUE_LENGTH and _count_ok(v, shown=False)
        for k, v in reasons.items()
    ):
        raise SkewInvalid(f"reasons of {name!r} map reasons to counts")
    if not all(_rate_ok(row[f]) for f in FIELDS[4:9]) or row["flag"] not in (True, False, None):
        raise SkewInvalid(f"rates of {name!r} are numbers or null, the flag true, false or null")


def skew_validate(report: Any) -> dict[str, Any]:
    """`report` if it has the published shape, within the limits and suppressed (no row of
    fewer than THRESHOLD candidates shown by itself, no count under it); SkewInvalid if not.
    Its numbers cannot be checked: the attributes are never sent."""
    if not isinstance(report, dict) or set(report) != {"allowed_rate", "by"}:
        raise SkewInvalid('a skew report is {"allowed_rate", "by"}')
    by = report["by"]
    if not _rate_ok(report["allowed_rate"]) or not isinstance(by, dict) or len(by) > MAX_NAMES:
        raise SkewInvalid(f"at most {MAX_NAMES} attributes, and a rate or null")
    for name, rows in by.items():
        _name_check_report(name)
        if not isinstance(rows, list) or len(rows) > MAX_VALUES + 2:
            raise SkewInvalid(f"at most {MAX_VALUES + 2} rows for {name!r}")
        for row in rows:
            _row_check(name, row)
        shown = [(r["value"],) for r in rows if not r["suppressed"]]
        if len(set(shown)) != len(shown) or any(r["suppressed"] for r in rows[:-1]):
            raise SkewInvalid(f"values of {name!r} appear once, the suppressed row last")
    return report


def _name_check_report(name: Any) -> None:
    try:
        _name_check(name)
    except AttributesInvalid as exc:
        raise SkewInvalid(str(exc)) from None
