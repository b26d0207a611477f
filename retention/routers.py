"""External databases hold other systems' tables: the service reads and purges them with
plain SQL and never migrates them or stores its own models there."""

from __future__ import annotations

from typing import Any

from django.conf import settings


class ExternalDatabaseRouter:
    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if db in settings.RETENTION_EXTERNAL_DATABASES:
            return False
        return None
