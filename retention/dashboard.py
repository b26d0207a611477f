"""Retention's panels on the admin dashboard (governance.dashboard): rights requests open,
due within 7 days and overdue, and the last purge runs with their failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from governance.dashboard import Panel
from retention.models import AccessRequest, ErasureRequest, PurgeRun, RequestStatus

DUE_SOON = timedelta(days=7)
LAST_RUNS = 5


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else ""


def rights_requests() -> Panel:
    now = timezone.now()
    rows = []
    for label, model in (("Erasure", ErasureRequest), ("Access", AccessRequest)):
        counts = (
            model.objects.exclude(status=RequestStatus.COMPLETE)
            .order_by()
            .aggregate(
                open=Count("pk"),
                due_soon=Count("pk", filter=Q(due_at__gte=now, due_at__lt=now + DUE_SOON)),
                overdue=Count("pk", filter=Q(due_at__lt=now)),
            )
        )
        rows.append([label, counts["open"], counts["due_soon"], counts["overdue"]])
    return Panel(
        key="rights-requests",
        title="Rights requests",
        columns=["Request", "Open", "Due in 7 days", "Overdue"],
        rows=rows,
        note="Open: not complete (pending, running, held or failed). GDPR Art. 12(3).",
        links=[
            ("Erasure requests", reverse("admin:retention_erasurerequest_changelist")),
            ("Access requests", reverse("admin:retention_accessrequest_changelist")),
        ],
        order=50,
    )


def purge_runs() -> Panel:
    since = timezone.now() - timedelta(days=30)
    failures = PurgeRun.objects.filter(status=PurgeRun.Status.FAILED, started_at__gte=since)
    runs = PurgeRun.objects.order_by("-started_at")[:LAST_RUNS]
    return Panel(
        key="purge-runs",
        title="Last purge runs",
        columns=["Started", "Status", "Removed", "Held back", "Error"],
        rows=[
            [
                _when(run.started_at) + (" (dry run)" if run.dry_run else ""),
                run.get_status_display(),
                run.removed,
                run.held,
                run.error[:120],
            ]
            for run in runs
        ],
        note=f"Failed runs in the last 30 days: {failures.count()}.",
        links=[("All purge runs", reverse("admin:retention_purgerun_changelist"))],
        order=60,
        empty="No purge run yet.",
    )


def retention_panels() -> list[Panel]:
    return [rights_requests(), purge_runs()]
