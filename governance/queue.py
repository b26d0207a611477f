"""Queuing a Celery task from a service, by the task's registered name.

By name, so a service never imports the tasks module that imports it (tasks call services;
an import back would be a cycle). The name is the contract: each tasks.py declares it with
`name=` from the constant its service module exports.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from governance.celery import app


def task_send(name: str, /, kwargs: dict[str, Any], **options: Any) -> None:
    """Sends the task now (`options` as for apply_async: countdown, retry, ...)."""
    app.send_task(name, kwargs=kwargs, **options)


def task_queue_on_commit(name: str, /, **kwargs: Any) -> None:
    """Sends the task once the current transaction commits, never before its data is there."""
    transaction.on_commit(lambda: app.send_task(name, kwargs=kwargs))
