"""A synthetic population whose consent odds follow published odds ratios, with the analytic
representation of each group: the "Done when" of the consent-skew issue.

Non-consent odds ratios after Damery et al.: age 40-59 2.84 (against 18-39), female 1.62
(against male), most deprived 1.61 (against least); 60+ like the reference. The reference
group (18-39, male, least deprived) consents with probability REFERENCE_RATE; a person's
non-consent odds are the reference odds times the ratios of their groups.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

REFERENCE_RATE = 0.7
# attribute -> value -> (share of the population, odds ratio of non-consent)
ATTRIBUTES: dict[str, dict[str, tuple[float, float]]] = {
    "age_band": {"18-39": (0.40, 1.0), "40-59": (0.35, 2.84), "60+": (0.25, 1.0)},
    "sex": {"male": (0.5, 1.0), "female": (0.5, 1.62)},
    "deprivation": {"least": (0.6, 1.0), "most": (0.4, 1.61)},
}
# Their analytic representation (share allowed / share of candidates), from the above:
# 18-39 and 60+ 1.169, 40-59 0.686 (outside [0.8, 1.25]), male 1.109, female 0.891,
# least 1.086, most 0.871.


def groups() -> Iterator[tuple[dict[str, str], float, float]]:
    """Each combination of values: (attributes, share of the population, consent rate)."""
    odds = (1 - REFERENCE_RATE) / REFERENCE_RATE
    names = list(ATTRIBUTES)
    for values in itertools.product(*(ATTRIBUTES[n].items() for n in names)):
        share, ratio = 1.0, odds
        for _, (value_share, value_ratio) in values:
            share *= value_share
            ratio *= value_ratio
        yield dict(zip(names, (v for v, _ in values), strict=True)), share, 1 / (1 + ratio)


def representation() -> dict[tuple[str, str], float]:
    """The analytic representation of each (attribute, value)."""
    combos = list(groups())
    overall = sum(share * rate for _, share, rate in combos)
    found = {}
    for name, values in ATTRIBUTES.items():
        for value in values:
            inside = [(share, rate) for attrs, share, rate in combos if attrs[name] == value]
            group_share = sum(share for share, _ in inside)
            group_rate = sum(share * rate for share, rate in inside) / group_share
            found[(name, value)] = group_rate / overall
    return found


def people(total: int, *, seed: int | None = 15) -> list[tuple[dict[str, str], bool]]:
    """`total` people (a multiple of 1,000, so every group's size is whole): attributes and
    whether they consent. With a seed, each consents at random at their group's rate; with
    seed=None, exactly round(size * rate) of each group consent (small runs stay close)."""
    rng = random.Random(seed)
    found = []
    for attrs, share, rate in groups():
        size = round(total * share)
        consenting = round(size * rate)
        for i in range(size):
            consents = rng.random() < rate if seed is not None else i < consenting
            found.append((attrs, consents))
    return found
