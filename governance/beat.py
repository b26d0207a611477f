"""Celery beat's scheduler: django-celery-beat's database scheduler plus a heartbeat file.

The database scheduler keeps the schedule in the database and writes no file, so a health
check (docker-compose.yml's beat service) or `make run` waiting for beat has nothing to
look at. This one touches BEAT_HEARTBEAT_FILE after every tick it completes: beat ticks at
least every few seconds (the scheduler's max_interval), so a file older than a minute
means beat is stuck or cannot reach its database.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler


class HeartbeatScheduler(DatabaseScheduler):
    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = super().tick(*args, **kwargs)
        settings.BEAT_HEARTBEAT_FILE.touch()
        return float(interval)
