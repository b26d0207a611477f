"""The Celery beat schedule the settings install: periodic tasks named by their registered
names (governance imports no app). Retention's policy runs are seeded into
django-celery-beat's tables by a migration instead, so staff can change them."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab


def beat_schedule(*, outbox_sweep_seconds: float) -> dict[str, dict[str, Any]]:
    return {
        "outbox-sweep": {
            "task": "governance.outbox_dispatch",
            "schedule": outbox_sweep_seconds,
        },
        # Names of consent.snapshots.services' tasks (governance imports no app).
        "snapshots-expire": {"task": "consent.snapshots_expire", "schedule": 300.0},
        "snapshots-resume": {"task": "consent.snapshots_resume", "schedule": 300.0},
        # The banner's `shown` counts, from Redis into the database (consent.reports.services).
        "banner-shown-flush": {"task": "consent.banner_shown_flush", "schedule": 60.0},
        # The whole ledger's chain check, recorded for the admin dashboard.
        "ledger-verify": {"task": "consent.ledger_verify", "schedule": crontab(hour=3, minute=30)},
        # consent.imports.services' (imports that stopped progressing).
        "imports-resume": {"task": "consent.imports_resume", "schedule": 300.0},
    }
