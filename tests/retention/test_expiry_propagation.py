"""Consent expiry appends `expired` events; a withdrawal (only) reaches tied targets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent import identity, services
from consent.ledger.expiry import consent_expire_due
from consent.models import Action, ConsentEvent, ConsentState, IndicationMethod, Source, Subject
from consent.tasks import consent_expire_task
from governance.actors import Actor
from governance.models import AuditEvent, OutboxEvent
from retention.models import Watermark
from retention.services import holds, propagation
from retention.tasks import withdrawals_propagate_task
from tests.retention.conftest import chain_verifies, ml_rows

pytestmark = pytest.mark.django_db(databases=["default", "features"])

STAFF = Actor.system("test")


def key(identifier: str) -> str:
    return identity.subject_key(identifier)


def grant(subject_id: str, purpose: str, at=None) -> None:
    services.consent_record(
        subject_id=subject_id,
        decisions=[services.DecisionInput(purpose, True)],
        actor=STAFF,
        now=at,
    )


def test_expiry_appends_expired_events_effective_at_expiry_recorded_now(purposes):
    now = timezone.now()
    granted_at = now - timedelta(days=40)
    grant("eve", "direct_marketing", granted_at)  # ttl 30 days
    grant("eve", "analytics", granted_at)  # ttl 365 days: still standing
    assert consent_expire_due(now=now) == 1
    event = ConsentEvent.objects.get(action=Action.EXPIRED)
    assert event.effective_at == granted_at + timedelta(days=30)
    assert event.recorded_at == now
    assert event.source == Source.SYSTEM and event.indication_method == IndicationMethod.SYSTEM
    state = ConsentState.objects.get(purpose=purposes["direct_marketing"])
    assert state.status == Action.EXPIRED
    assert ConsentState.objects.get(purpose=purposes["analytics"]).status == Action.GRANTED
    outbox = OutboxEvent.objects.get(event_type="consent.expired")
    assert outbox.payload["purpose"] == "direct_marketing" and outbox.subject_key == key("eve")
    assert AuditEvent.objects.filter(action="consent.expire").count() == 1
    assert chain_verifies(Subject.objects.get())
    # Running again finds nothing more to do.
    assert consent_expire_due(now=now) == 0
    assert consent_expire_task.apply().get() == 0


def test_expiry_leaves_a_renewed_grant_alone(purposes):
    now = timezone.now()
    grant("fay", "direct_marketing", now - timedelta(days=40))
    grant("fay", "direct_marketing", now - timedelta(days=1))
    assert consent_expire_due(now=now) == 0


def propagate() -> int:
    # Pass an instant past the lag, as the scheduled task would see it a minute later.
    return propagation.withdrawals_propagate(now=timezone.now() + timedelta(minutes=2))


def test_withdrawal_removes_the_subjects_rows_in_targets_tied_to_the_purpose(purposes, ml_features):
    grant("gus", "ml_training")
    grant("hal", "ml_training")
    ml_features(key("gus"), timezone.now(), n=3)
    ml_features(key("hal"), timezone.now(), n=2)
    services.consent_withdraw(subject_id="gus", actor=STAFF, purposes=["ml_training"])
    assert propagate() == 1
    assert ml_rows(key("gus")) == 0 and ml_rows(key("hal")) == 2
    logged = AuditEvent.objects.get(action="retention.withdrawal_propagate")
    assert logged.detail["removed"] == {"external:features.ml_features": 3}
    # The watermark moved: the same withdrawal is not handled twice.
    assert propagate() == 0
    assert Watermark.objects.get(name="withdrawals").position is not None


def test_refusals_and_gpc_signals_delete_nothing(purposes, ml_features):
    ml_features(key("ida"), timezone.now(), n=2)
    ml_features(key("jon"), timezone.now(), n=2)
    services.consent_record(  # a first refusal
        subject_id="ida", decisions=[services.DecisionInput("ml_training", False)], actor=STAFF
    )
    grant("jon", "targeted_ads")
    services.consent_record(  # GPC: an opt-out, never a withdrawal
        subject_id="jon",
        decisions=[services.DecisionInput("targeted_ads", False)],
        actor=STAFF,
        source=Source.GPC,
        indication_method=IndicationMethod.GPC,
    )
    assert propagate() == 0
    assert ml_rows(key("ida")) == 2 and ml_rows(key("jon")) == 2


def test_an_imported_withdrawal_deletes_only_while_it_stands(purposes, ml_features):
    import io
    import json

    from consent.imports import check
    from consent.imports import services as imports

    def at(days: int) -> str:
        return (timezone.now() - timedelta(days=days)).isoformat()

    grant("lee", "ml_training")  # granted now, after the imported withdrawal below
    ml_features(key("lee"), timezone.now(), n=2)
    ml_features(key("mo"), timezone.now(), n=2)
    lines = [
        {
            "subject_id": s,
            "purpose": "ml_training",
            "granted": g,
            "effective_at": at(d),
            "external_id": f"{s}-{d}",
        }
        for s in ("lee", "mo")
        for g, d in ((True, 20), (False, 10))
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    checked = check.import_check(body=io.BytesIO(body), fmt="jsonl")
    created = imports.import_create(actor=STAFF, checked=checked, queue=False)
    imports.import_apply(import_id=created.id)
    assert propagate() == 2
    assert ml_rows(key("lee")) == 2  # went back on it since: nothing deleted
    assert ml_rows(key("mo")) == 0  # still withdrawn: the withdrawal reaches the targets


def test_withdrawal_of_another_purpose_deletes_nothing_here(purposes, ml_features):
    grant("kim", "analytics")
    ml_features(key("kim"), timezone.now(), n=2)
    services.consent_withdraw(subject_id="kim", actor=STAFF, purposes=["analytics"])
    assert propagate() == 1
    assert ml_rows(key("kim")) == 2


def test_withdrawal_does_not_reach_held_subjects(purposes, ml_features):
    grant("lou", "ml_training")
    ml_features(key("lou"), timezone.now(), n=2)
    holds.hold_place(reason="litigation", actor=STAFF, subject_id="lou")
    services.consent_withdraw(subject_id="lou", actor=STAFF, purposes=["ml_training"])
    assert propagate() == 1
    assert ml_rows(key("lou")) == 2


def test_withdrawals_younger_than_the_lag_wait_for_the_next_pass(purposes, ml_features):
    grant("max", "ml_training")
    ml_features(key("max"), timezone.now(), n=1)
    services.consent_withdraw(subject_id="max", actor=STAFF, purposes=["ml_training"])
    assert propagation.withdrawals_propagate(now=timezone.now()) == 0
    assert ml_rows(key("max")) == 1
    assert propagate() == 1 and ml_rows(key("max")) == 0


def test_propagation_task_runs_every_pending_withdrawal(purposes, ml_features, settings):
    settings.RETENTION_PROPAGATION_LAG_SECONDS = 0
    for name in ("ned", "oli", "pat"):
        grant(name, "ml_training")
        ml_features(key(name), timezone.now(), n=1)
        services.consent_withdraw(subject_id=name, actor=STAFF, purposes=["ml_training"])
    assert withdrawals_propagate_task.apply(kwargs={"batch": 2}).get() == 3
    assert ml_rows() == 0
