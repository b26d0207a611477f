"""The Celery application; tasks live in each app's tasks.py.

Its signals carry the request id of the web request that queued a task into the task's
logs, time and count every task (governance.metrics), keep Django's logging configuration
(with its redaction filter) instead of Celery's own, and start the worker's /metrics
server when CELERY_METRICS_PORT is set.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

app = Celery("governance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The message header that carries the request id from the publisher to the task.
REQUEST_ID_HEADER = "governance_request_id"
_tokens: dict[str, Any] = {}


@signals.setup_logging.connect
def _keep_django_logging(**kwargs: Any) -> None:
    """Celery would replace the root logger's handlers, and with them the filters that redact
    identifiers and add the request id; Django's LOGGING stays in force instead."""


@signals.before_task_publish.connect
def _publish_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    from governance.logging import request_id_get

    request_id = request_id_get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.task_prerun.connect
def _task_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    from governance.logging import request_id_set
    from governance.metrics import task_started

    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    # Set even when empty: a worker thread must not lend the previous task's id to this one.
    _tokens[task_id] = request_id_set(str(request_id or ""))
    task_started(task_id)


@signals.task_postrun.connect
def _task_postrun(
    task_id: str = "", task: Any = None, state: str | None = None, **kwargs: Any
) -> None:
    from governance.logging import request_id_reset
    from governance.metrics import task_finished

    task_finished(task_id, getattr(task, "name", "unknown"), state or "")
    token = _tokens.pop(task_id, None)
    if token is not None:
        request_id_reset(token)


@signals.task_failure.connect
def _task_failure(sender: Any = None, **kwargs: Any) -> None:
    from governance.metrics import task_failed

    task_failed(getattr(sender, "name", "unknown"))


@signals.worker_init.connect
def _worker_metrics(**kwargs: Any) -> None:
    from django.conf import settings

    from governance.metrics import worker_metrics_serve

    if settings.CELERY_METRICS_PORT:
        worker_metrics_serve(settings.CELERY_METRICS_PORT)
