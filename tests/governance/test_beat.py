"""Beat's scheduler touches its heartbeat file, which docker-compose.yml's health check of
beat reads (the database scheduler itself writes no file)."""

from __future__ import annotations

import os

import pytest

from governance.beat import HeartbeatScheduler
from governance.celery import app

# The database scheduler closes old connections, which a test transaction would not survive.
pytestmark = pytest.mark.django_db(transaction=True)


def test_each_tick_touches_the_heartbeat_file(settings, tmp_path):
    settings.BEAT_HEARTBEAT_FILE = tmp_path / "beat-heartbeat"
    # lazy: no schedule installed, so a tick sends no task.
    scheduler = HeartbeatScheduler(app=app, lazy=True)
    scheduler.tick()
    first = settings.BEAT_HEARTBEAT_FILE.stat().st_mtime
    os.utime(settings.BEAT_HEARTBEAT_FILE, (first - 120, first - 120))
    scheduler.tick()
    assert settings.BEAT_HEARTBEAT_FILE.stat().st_mtime >= first
