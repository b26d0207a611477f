"""The decision rule: may this subject be processed for this purpose at this instant?

One pure function, `decide`, answers for every check (bulk, stream, single, drift, as-of
and current). Callers gather the facts (the standing event, from ConsentState for "now" or
from the ledger for a past instant) and the rule decides, with a reason and the event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from consent.models import Action, LegalBasis


class Reason:
    GRANTED = "granted"
    NO_CONSENT = "no_consent"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    NOTICE_SUPERSEDED = "notice_superseded"
    OBJECTED = "objected"
    GPC_OPT_OUT = "gpc_opt_out"
    ERASED = "erased"
    LEGITIMATE_INTEREST = "legitimate_interest"
    # Other legal bases answer with their own name: contract, legal_obligation, ...


@dataclass(frozen=True)
class PurposeRule:
    """What the rule needs to know of a purpose: its basis, GPC flag and material notices."""

    id: int
    key: str
    legal_basis: str
    gpc_opt_out: bool
    # (version, published_at) of each material notice version, any order.
    material_versions: tuple[tuple[int, datetime], ...] = ()

    def superseded(self, notice_version: int, at: datetime) -> bool:
        """A material version newer than `notice_version` was published at or before `at`."""
        if not self.material_versions:
            return False
        return any(v > notice_version and p <= at for v, p in self.material_versions)


@dataclass(frozen=True)
class Standing:
    """The latest event for (subject, purpose) effective at or before the instant."""

    action: str
    notice_version: int
    effective_at: datetime
    expires_at: datetime | None
    event_id: str
    gpc: bool = False


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    event_id: str | None = None


def decide(
    *,
    rule: PurposeRule,
    standing: Standing | None,
    erased_at: datetime | None,
    at: datetime,
) -> Verdict:
    """The rule of DESIGN.md, for one subject, one purpose, one instant `at`.

    An erased subject is denied on every event before its erasure (and when it has none);
    a later event (a new grant after erasure) counts again.
    """
    if erased_at is not None and (standing is None or standing.effective_at <= erased_at):
        return Verdict(False, Reason.ERASED, standing.event_id if standing else None)
    event_id = standing.event_id if standing else None
    basis = rule.legal_basis
    if basis == LegalBasis.CONSENT:
        if standing is None:
            return Verdict(False, Reason.NO_CONSENT)
        action = standing.action
        if action == Action.GRANTED:
            if standing.expires_at is not None and standing.expires_at <= at:
                return Verdict(False, Reason.EXPIRED, event_id)
            if rule.superseded(standing.notice_version, at):
                return Verdict(False, Reason.NOTICE_SUPERSEDED, event_id)
            return Verdict(True, Reason.GRANTED, event_id)
        if action == Action.REFUSED:
            return Verdict(False, Reason.GPC_OPT_OUT if standing.gpc else Reason.REFUSED, event_id)
        if action == Action.WITHDRAWN:
            return Verdict(False, Reason.WITHDRAWN, event_id)
        return Verdict(False, Reason.EXPIRED, event_id)
    if basis == LegalBasis.LEGITIMATE_INTEREST:
        if standing is not None and standing.action in (Action.REFUSED, Action.WITHDRAWN):
            if standing.gpc and rule.gpc_opt_out:
                return Verdict(False, Reason.GPC_OPT_OUT, event_id)
            return Verdict(False, Reason.OBJECTED, event_id)
        return Verdict(True, Reason.LEGITIMATE_INTEREST, event_id)
    return Verdict(True, basis, event_id)
