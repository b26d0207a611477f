"""The consent app's panels on the admin dashboard (governance.dashboard): grant rates per
purpose over time and per property, GPC share, people awaiting re-consent, and the last
verification of the ledger. Rates come from the consent-rates report, small counts and all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from consent.models import LedgerVerification, LegalBasis, Property, Purpose
from consent.reports import selectors
from consent.reports.selectors import Window
from governance.dashboard import Chart, Panel, Series, percent

WEEKS = 12
SMALL_NOTE = "n/a: a rate resting on fewer than 10 events is not shown."


def _consent_purposes() -> list[Purpose]:
    return list(Purpose.objects.filter(active=True, legal_basis=LegalBasis.CONSENT).order_by("key"))


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def rates_over_time(*, purposes: list[Purpose], today: date) -> Panel:
    first = today - timedelta(days=today.weekday(), weeks=WEEKS - 1)
    window = Window(start=first, end=today)
    labels = [(first + timedelta(weeks=n)).isoformat() for n in range(WEEKS)]
    series = []
    for purpose in purposes:
        rates = {
            b["bucket"]: b["grant_rate"]
            for b in selectors.consent_rates(purpose=purpose, window=window, by="week")
        }
        series.append(Series(purpose.key, [rates.get(label) for label in labels]))
    return Panel(
        key="rates-over-time",
        title=f"Grant rate per purpose, by week (last {WEEKS} weeks)",
        columns=["Week of", *(s.name for s in series)],
        rows=[[label, *(percent(s.values[n]) for s in series)] for n, label in enumerate(labels)],
        chart=Chart(kind="line", labels=labels, series=series),
        note=f"granted / (granted + refused). {SMALL_NOTE}",
        order=10,
    )


def rates_per_property(*, purposes: list[Purpose], today: date) -> Panel:
    window = Window.last_days(end=today)
    names = list(
        Property.objects.filter(active=True).order_by("name").values_list("name", flat=True)
    )
    series = []
    for purpose in purposes:
        rates = {
            b["bucket"]: b["grant_rate"]
            for b in selectors.consent_rates(purpose=purpose, window=window, by="property")
        }
        series.append(Series(purpose.key, [rates.get(name) for name in names]))
    return Panel(
        key="rates-per-property",
        title="Grant rate per property (last 30 days)",
        columns=["Property", *(s.name for s in series)],
        rows=[[name, *(percent(s.values[n]) for s in series)] for n, name in enumerate(names)],
        chart=Chart(kind="bar", labels=names, series=series),
        note=f"Choices recorded through each property's banner key. {SMALL_NOTE}",
        order=20,
        empty="No active property.",
    )


def gpc_share(*, today: date) -> Panel:
    rows = selectors.gpc_share(window=Window.last_days(end=today))
    return Panel(
        key="gpc-share",
        title="Global Privacy Control share (last 30 days)",
        columns=["Purpose", "Events", "From GPC", "GPC share"],
        rows=[
            [
                row["bucket"] or "Other purposes, merged (fewer than 10 events each)",
                row["events"],
                row["gpc"],
                percent(row["gpc_share"]),
            ]
            for row in rows
        ],
        note="Events (grants, refusals, withdrawals) whose indication was a GPC signal. "
        "Counts under 10 read <10.",
        order=30,
        empty="No consent events in the last 30 days.",
    )


def reconsent() -> Panel:
    awaiting = selectors.reconsent_awaiting()
    return Panel(
        key="reconsent",
        title="Awaiting re-consent after a material notice change",
        columns=["Purpose", "People"],
        rows=[[key, people] for key, people in sorted(awaiting.items())],
        note="Granted to an earlier notice version; not processed until they consent again.",
        order=40,
        empty="Nobody: every grant is to the current material notice version.",
    )


def ledger_verification() -> Panel:
    last = LedgerVerification.objects.first()
    rows: list[list[Any]] = []
    if last is not None:
        rows = [
            ["Finished", _when(last.finished_at)],
            ["Result", "verified" if last.ok else f"{last.breaks} breaks"],
            ["Subjects", last.subjects],
            ["Events", last.events],
            ["Run by", last.trigger],
        ]
    return Panel(
        key="ledger",
        title="Last ledger verification",
        columns=["", "Last run"],
        rows=rows,
        order=80,
        empty="Never run: python manage.py verify_ledger, or the nightly task, records one.",
    )


def consent_panels() -> list[Panel]:
    today = datetime.now(UTC).date()
    purposes = _consent_purposes()
    return [
        rates_over_time(purposes=purposes, today=today),
        rates_per_property(purposes=purposes, today=today),
        gpc_share(today=today),
        reconsent(),
        ledger_verification(),
    ]
