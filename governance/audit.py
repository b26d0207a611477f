"""The audit trail: call audit_record inside the transaction of the change it describes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from governance.actors import Actor
from governance.models import AuditEvent

P = ParamSpec("P")


def hash_ip(ip: str) -> str:
    if not ip:
        return ""
    key = (settings.SECRET_KEY + ":audit-ip").encode()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()


def audit_build(
    *,
    actor: Actor,
    action: str,
    target_type: str = "",
    target_id: str = "",
    ip: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """The unsaved row. Never put a plaintext subject identifier in `detail`."""
    return AuditEvent(
        at=timezone.now(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        actor_key=actor.key[:16],
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:128],
        ip_hash=hash_ip(ip),
        detail=detail or {},
    )


def _saved(build: Callable[P, AuditEvent]) -> Callable[P, AuditEvent]:
    def record(*args: P.args, **kwargs: P.kwargs) -> AuditEvent:
        event = build(*args, **kwargs)
        event.save(force_insert=True)
        return event

    return record


audit_record = _saved(audit_build)
"""Appends one audit row (audit_build's arguments). Never put a plaintext subject
identifier in `detail`."""


@contextmanager
def audit_purge_allowed() -> Iterator[None]:
    """Inside this block, in this transaction only, the trigger lets DELETE through (for the
    retention of audit rows). On SQLite deletes are not guarded."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('governance.audit_purge', 'on', true)")
        yield
        # On an error the rollback (to this savepoint, or of the whole transaction) undoes
        # the setting with everything else.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('governance.audit_purge', '', true)")
