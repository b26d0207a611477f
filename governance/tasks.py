"""Operational tasks of the service itself."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="governance.ping", soft_time_limit=10, time_limit=20)
def ping_task(token: str) -> str:
    """Echoes its argument: proves a worker consumes from the broker and returns results."""
    return f"pong:{token}"
