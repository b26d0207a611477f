"""The decision rule: its cases one by one, and property tests that every path agrees with a
plain replay of the ledger on random histories."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import identity, services
from consent.checks.facts import PortableFacts
from consent.checks.facts_pg import PostgresFacts
from consent.checks.rule import PurposeRule, Reason, Standing, decide
from consent.checks.selectors import check_one
from consent.models import (
    Action,
    ConsentEvent,
    LegalBasis,
    NoticeVersion,
    Purpose,
    Source,
    Subject,
)
from governance.actors import Actor
from tests import factories

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def rule(basis: str = LegalBasis.CONSENT, *, gpc: bool = False, material=()) -> PurposeRule:
    return PurposeRule(1, "p", basis, gpc, tuple(material))


def standing(action: str, *, at: datetime, version: int = 1, expires=None, gpc=False) -> Standing:
    return Standing(action, version, at, expires, "e1", gpc)


def day(n: float) -> datetime:
    return NOW + timedelta(days=n)


# --- the cases, directly --------------------------------------------------------------------


def test_consent_needs_a_standing_grant():
    assert decide(rule=rule(), standing=None, erased_at=None, at=NOW).reason == Reason.NO_CONSENT
    granted = decide(rule=rule(), standing=standing("granted", at=day(-1)), erased_at=None, at=NOW)
    assert (granted.allowed, granted.reason, granted.event_id) == (True, "granted", "e1")
    for action, reason in [
        ("refused", "refused"),
        ("withdrawn", "withdrawn"),
        ("expired", "expired"),
    ]:
        verdict = decide(rule=rule(), standing=standing(action, at=day(-1)), erased_at=None, at=NOW)
        assert (verdict.allowed, verdict.reason) == (False, reason)


def test_a_grant_past_its_expiry_is_expired():
    grant = standing("granted", at=day(-10), expires=day(-1))
    assert decide(rule=rule(), standing=grant, erased_at=None, at=NOW).reason == "expired"
    assert decide(rule=rule(), standing=grant, erased_at=None, at=day(-2)).allowed


def test_material_notice_supersedes_only_from_its_publication():
    material = [(2, day(-5))]
    grant = standing("granted", at=day(-10), version=1)
    assert decide(rule=rule(material=material), standing=grant, erased_at=None, at=day(-6)).allowed
    late = decide(rule=rule(material=material), standing=grant, erased_at=None, at=day(-4))
    assert (late.allowed, late.reason) == (False, "notice_superseded")
    regrant = standing("granted", at=day(-3), version=2)
    assert decide(rule=rule(material=material), standing=regrant, erased_at=None, at=NOW).allowed


def test_legitimate_interest_allows_unless_objected_or_gpc():
    li = rule(LegalBasis.LEGITIMATE_INTEREST, gpc=True)
    assert decide(rule=li, standing=None, erased_at=None, at=NOW).reason == "legitimate_interest"
    objected = decide(rule=li, standing=standing("withdrawn", at=day(-1)), erased_at=None, at=NOW)
    assert (objected.allowed, objected.reason) == (False, "objected")
    gpc = decide(
        rule=li, standing=standing("refused", at=day(-1), gpc=True), erased_at=None, at=NOW
    )
    assert (gpc.allowed, gpc.reason) == (False, "gpc_opt_out")
    regranted = decide(rule=li, standing=standing("granted", at=day(-1)), erased_at=None, at=NOW)
    assert regranted.allowed


def test_gpc_refusal_of_a_consent_purpose_reads_as_gpc_opt_out():
    gpc = standing("refused", at=day(-1), gpc=True)
    assert decide(rule=rule(gpc=True), standing=gpc, erased_at=None, at=NOW).reason == "gpc_opt_out"


def test_other_bases_are_allowed_with_their_name():
    verdict = decide(rule=rule(LegalBasis.CONTRACT), standing=None, erased_at=None, at=NOW)
    assert (verdict.allowed, verdict.reason) == (True, "contract")


def test_erasure_denies_everything_before_it_and_a_later_grant_counts_again():
    for basis in LegalBasis.values:
        verdict = decide(rule=rule(basis), standing=None, erased_at=day(-1), at=NOW)
        assert (verdict.allowed, verdict.reason) == (False, "erased")
    old = standing("granted", at=day(-3))
    assert decide(rule=rule(), standing=old, erased_at=day(-2), at=NOW).reason == "erased"
    new = standing("granted", at=day(-1))
    assert decide(rule=rule(), standing=new, erased_at=day(-2), at=NOW).allowed


# --- property: every path agrees with a plain replay of the ledger --------------------------


def replay(
    *, purpose: Purpose, subject: Subject | None, at: datetime
) -> tuple[bool, str, str | None]:
    """The rule written out once more, over the raw ledger, the slow obvious way."""
    latest = None
    if subject is not None:
        for event in ConsentEvent.objects.filter(subject=subject, purpose=purpose).order_by("seq"):
            if event.effective_at <= at and (
                latest is None
                or (event.effective_at, event.seq) >= (latest.effective_at, latest.seq)
            ):
                latest = event
    event_id = str(latest.id) if latest else None
    erased_at = subject.erased_at if subject is not None else None
    if erased_at is not None and (latest is None or latest.effective_at <= erased_at):
        return False, "erased", event_id
    if purpose.legal_basis == LegalBasis.CONSENT:
        if latest is None:
            return False, "no_consent", None
        if latest.action == Action.GRANTED:
            if latest.expires_at is not None and latest.expires_at <= at:
                return False, "expired", event_id
            newer_material = NoticeVersion.objects.filter(
                purpose=purpose,
                material=True,
                version__gt=latest.notice_version,
                published_at__lte=at,
            )
            if newer_material.exists():
                return False, "notice_superseded", event_id
            return True, "granted", event_id
        if latest.action == Action.REFUSED and latest.source == Source.GPC:
            return False, "gpc_opt_out", event_id
        return False, latest.action, event_id
    if purpose.legal_basis == LegalBasis.LEGITIMATE_INTEREST:
        if latest is not None and latest.action in (Action.REFUSED, Action.WITHDRAWN):
            if latest.source == Source.GPC and purpose.gpc_opt_out:
                return False, "gpc_opt_out", event_id
            return False, "objected", event_id
        return True, "legitimate_interest", event_id
    return True, purpose.legal_basis, event_id


OPS = st.sampled_from(
    ["grant", "grant", "refuse", "withdraw", "gpc", "material", "minor", "erase", "grant_li"]
)
HISTORY = st.lists(
    st.tuples(OPS, st.integers(min_value=0, max_value=2), st.integers(min_value=1, max_value=96)),
    min_size=0,
    max_size=14,
)
_ids = itertools.count(1)


def _apply(op: str, subject_id: str, purposes: dict[str, Purpose], when: datetime) -> None:
    actor = Actor.system("property")
    consent_key, li_key = purposes["consent"].key, purposes["li"].key
    if op == "grant":
        factories_record(subject_id, {consent_key: True}, when)
    elif op == "grant_li":
        factories_record(subject_id, {li_key: True}, when)
    elif op == "refuse":
        factories_record(subject_id, {consent_key: False, li_key: False}, when)
    elif op == "withdraw":
        services.consent_withdraw(subject_id=subject_id, actor=actor, now=when)
    elif op == "gpc":
        services.consent_record(
            subject_id=subject_id,
            decisions=[
                services.DecisionInput(purpose=consent_key, granted=False),
                services.DecisionInput(purpose=li_key, granted=False),
            ],
            actor=actor,
            source=Source.GPC,
            indication_method="gpc",
            now=when,
        )
    elif op in ("material", "minor"):
        services.notice_version_publish(
            purpose=purposes["consent"],
            texts={"en": ("t", f"{op} {when}")},
            material=op == "material",
            published_at=when,
        )
    elif op == "erase":
        subject = Subject.objects.filter(key=identity.subject_key(subject_id)).first()
        if subject is not None:
            services.subject_mark_erased(subject=subject, now=when)


def factories_record(subject_id: str, granted: dict[str, bool], when: datetime) -> None:
    services.consent_record(
        subject_id=subject_id,
        decisions=[services.DecisionInput(purpose=k, granted=v) for k, v in granted.items()],
        actor=Actor.system("property"),
        indication_method="button",
        now=when,
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=HISTORY,
    ttl_hours=st.integers(min_value=1, max_value=24 * 20),
    gpc_opt_out=st.booleans(),
    probes=st.lists(st.integers(min_value=-5, max_value=24 * 45), min_size=1, max_size=6),
)
def test_fast_paths_and_ledger_replay_agree(db, history, ttl_hours, gpc_opt_out, probes):
    n = next(_ids)
    purposes = {
        "consent": factories.purpose(f"c{n}", ttl_days=None, gpc_opt_out=gpc_opt_out),
        "li": factories.purpose(
            f"li{n}", legal_basis=LegalBasis.LEGITIMATE_INTEREST, gpc_opt_out=True, ttl_days=None
        ),
    }
    Purpose.objects.filter(pk=purposes["consent"].pk).update(consent_ttl=timedelta(hours=ttl_hours))
    purposes["consent"].refresh_from_db()
    subject_ids = [f"p{n}-s{i}" for i in range(3)] + [f"p{n}-never"]
    start = timezone.now() - timedelta(days=45)
    when = start
    for op, who, gap_hours in history:
        when += timedelta(hours=gap_hours)
        _apply(op, subject_ids[who], purposes, when)

    now = timezone.now()
    instants = [start + timedelta(hours=h) for h in probes]
    keys = [identity.subject_key(s) for s in subject_ids]
    subjects = {s.key: s for s in Subject.objects.filter(key__in=keys)}
    for purpose in purposes.values():
        for facts in (PostgresFacts(), PortableFacts()):
            rule = facts.purpose_rule_of(purpose.pk)
            for at, as_of in [(now, False), (now, True), *[(i, True) for i in instants]]:
                expected = [replay(purpose=purpose, subject=subjects.get(k), at=at) for k in keys]
                with transaction.atomic():
                    answers = facts.standings(keys, rule, at=at, as_of=as_of)
                got = [(v.allowed, v.reason, v.event_id) for v in answers.verdicts]
                assert got == expected, (facts, purpose.key, at, as_of, history)
                for key, subject_id, want in zip(keys, subject_ids, expected, strict=True):
                    _, verdict = facts.one(key, purpose.key, at=at, as_of=as_of)
                    assert (verdict.allowed, verdict.reason, verdict.event_id) == want
                    _, one = check_one(
                        identifier=subject_id, purpose_key=purpose.key, as_of=at if as_of else None
                    )
                    assert (one.allowed, one.reason, one.event_id) == want
