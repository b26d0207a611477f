"""Reads of the checks: a purpose's rule, and the single check."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from consent import identity
from consent.checks.gather import facts_for
from consent.checks.rule import PurposeRule, Verdict
from governance.metrics import checks_observe


def purpose_rule_get(key: Any) -> PurposeRule:
    """The active purpose with this key, with its material notice versions; else 400."""
    return facts_for(connection).purpose_rule(key)


def check_one(
    *, identifier: str, purpose_key: str, as_of: datetime | None, now: datetime | None = None
) -> tuple[PurposeRule, Verdict]:
    """One subject's answer (on PostgreSQL one prepared query: purpose, its material
    notices, subject and standing together), then the decision rule, at `as_of` or else
    `now` (default: the clock)."""
    identity.validate_identifier(identifier)
    at = as_of or now or timezone.now()
    rule, verdict = facts_for(connection).one(
        identity.subject_key(identifier), purpose_key, at=at, as_of=as_of is not None
    )
    checks_observe(mode="single", purpose=rule.key, verdicts=(verdict,))
    return rule, verdict
