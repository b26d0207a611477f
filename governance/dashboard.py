"""The admin index as the privacy office's dashboard: panels that the apps register.

governance/ imports no app, so each app registers a function returning its panels (in its
AppConfig.ready); the admin index (templates/admin/governance/index.html) draws them in
`order`, each as a table and, where it has one, a chart drawn in the browser from the same
figures (static/governance/dashboard.js, with the vendored Chart.js).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Chart:
    """What dashboard.js draws: `kind` is a Chart.js type (line, bar); `percent` scales the
    axis from 0 to 1 and writes its ticks as percentages."""

    kind: str
    labels: Sequence[str]
    series: Sequence[Series]
    percent: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": list(self.labels),
            "series": [{"name": s.name, "values": list(s.values)} for s in self.series],
            "percent": self.percent,
        }


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    order: int = 100
    chart: Chart | None = None
    note: str = ""
    links: Sequence[tuple[str, str]] = field(default_factory=tuple)
    empty: str = "Nothing yet."

    @property
    def chart_id(self) -> str:
        return f"chart-{self.key}"


PanelProvider = Callable[[], Sequence[Panel]]
_PROVIDERS: list[PanelProvider] = []


def dashboard_register(provider: PanelProvider) -> None:
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


def dashboard_panels() -> list[Panel]:
    """Every registered panel, in order. A provider that fails costs its panels, not the
    admin index (the staff still need the app list below)."""
    panels: list[Panel] = []
    for provider in _PROVIDERS:
        try:
            panels.extend(provider())
        except Exception:  # a bug in one panel must not lock staff out of the admin
            logger.exception("dashboard panel %s failed", getattr(provider, "__name__", provider))
    return sorted(panels, key=lambda p: p.order)


def percent(rate: float | None) -> str:
    """A rate as the tables show it."""
    return "n/a" if rate is None else f"{rate:.1%}"


def webhook_panels() -> list[Panel]:
    """Governance's own panel: deliveries the dispatcher gave up on, awaiting the admin."""
    from django.db.models import Count, Min
    from django.urls import reverse

    from governance.models import WebhookDelivery

    parked = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PARKED).aggregate(
        count=Count("pk"), oldest=Min("created_at")
    )
    rows: list[list[Any]] = [["Parked deliveries", parked["count"]]]
    if parked["oldest"] is not None:
        rows.append(["Oldest parked since", f"{parked['oldest']:%Y-%m-%d %H:%M} UTC"])
    changelist = reverse("admin:governance_webhookdelivery_changelist")
    return [
        Panel(
            key="webhooks",
            title="Parked webhook deliveries",
            columns=["", "Now"],
            rows=rows,
            note="Gave up after every retry; redeliver them from the admin.",
            links=[("Parked deliveries", f"{changelist}?status__exact=parked")],
            order=70,
        )
    ]
