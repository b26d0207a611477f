"""The decision rule: may this subject be processed for this purpose at this instant?

One pure function, `decide`, answers for every check (bulk, stream, single, drift, as-of
and current). Callers gather the facts (the standing event, from ConsentState for "now" or
from the ledger for a past instant) and the rule decides, with a reason and the event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

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
    RESTRICTED = "restricted"
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


# Standing and Verdict are made once per subject of a check (a million for a stream):
# named tuples, which cost a fraction of a frozen dataclass to build.
class Standing(NamedTuple):
    """The latest event for (subject, purpose) effective at or before the instant."""

    action: str
    notice_version: int
    effective_at: datetime
    expires_at: datetime | None
    event_id: str
    gpc: bool = False


class Verdict(NamedTuple):
    allowed: bool
    reason: str
    event_id: str | None = None


# Plain strings: comparing with an enum member costs an attribute lookup on its class.
_CONSENT = LegalBasis.CONSENT.value
_LEGITIMATE_INTEREST = LegalBasis.LEGITIMATE_INTEREST.value
_GRANTED = Action.GRANTED.value
_REFUSED = Action.REFUSED.value
_WITHDRAWN = Action.WITHDRAWN.value
_NO_CONSENT = Verdict(False, Reason.NO_CONSENT)
_RESTRICTED = Verdict(False, Reason.RESTRICTED)


def decide(
    *,
    rule: PurposeRule,
    standing: Standing | None,
    erased_at: datetime | None,
    at: datetime,
    restricted: bool = False,
) -> Verdict:
    """The rule of DESIGN.md, for one subject, one purpose, one instant `at`.

    An erased subject is denied on every event before its erasure (and when it has none);
    a later event (a new grant after erasure) counts again. A subject whose processing is
    restricted at `at` (Art. 18: a period covers it) is denied every purpose, whatever its
    consents say; the answer rests on no event.
    """
    if erased_at is not None and (standing is None or standing.effective_at <= erased_at):
        return Verdict(False, Reason.ERASED, standing.event_id if standing else None)
    if restricted:
        return _RESTRICTED
    basis = rule.legal_basis
    if basis == _CONSENT:
        if standing is None:
            return _NO_CONSENT
        action, event_id = standing.action, standing.event_id
        if action == _GRANTED:
            if standing.expires_at is not None and standing.expires_at <= at:
                return Verdict(False, Reason.EXPIRED, event_id)
            if rule.material_versions and rule.superseded(standing.notice_version, at):
                return Verdict(False, Reason.NOTICE_SUPERSEDED, event_id)
            return Verdict(True, Reason.GRANTED, event_id)
        if action == _REFUSED:
            return Verdict(False, Reason.GPC_OPT_OUT if standing.gpc else Reason.REFUSED, event_id)
        if action == _WITHDRAWN:
            return Verdict(False, Reason.WITHDRAWN, event_id)
        return Verdict(False, Reason.EXPIRED, event_id)
    other_id = standing.event_id if standing else None
    if basis == _LEGITIMATE_INTEREST:
        if standing is not None and standing.action in (_REFUSED, _WITHDRAWN):
            if standing.gpc and rule.gpc_opt_out:
                return Verdict(False, Reason.GPC_OPT_OUT, other_id)
            return Verdict(False, Reason.OBJECTED, other_id)
        return Verdict(True, Reason.LEGITIMATE_INTEREST, other_id)
    return Verdict(True, basis, other_id)
