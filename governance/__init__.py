"""Project package: settings, URLs, the Celery app and the infrastructure every app shares."""

from governance.celery import app as celery_app

__all__ = ["celery_app"]
