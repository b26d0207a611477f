"""The audit trail: call audit_record inside the transaction of the change it describes.

Rows go only through retention and erasure. On PostgreSQL that is through the owner-owned
functions of migration 0008 (the app role cannot pass the trigger otherwise); elsewhere, and
for the owner's own sessions, through the transaction-local permit audit_purge_allowed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ParamSpec

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from governance.actors import Actor
from governance.db import PerDatabase
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


class _PostgresAuditGuard:
    """PostgreSQL: the trigger reads a transaction-local setting (the permit), and
    audit_purge_before keeps its own floor, which only the function's owner may change."""

    def permit(self, cursor: Any, *, on: bool) -> None:
        cursor.execute(
            "SELECT set_config('governance.audit_purge', %s, true)", ["on" if on else ""]
        )

    def floor_sync(self, *, using: str) -> None:
        days = max(0, int(settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS))
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_proc WHERE proname = 'audit_purge_before' "
                "AND pg_get_userbyid(proowner) = current_user"
            )
            if cursor.fetchone() is None:
                return  # not migrated this far, or not the owner: nothing this role may change
            # A literal, not a parameter: ALTER FUNCTION takes no bind parameters.
            cursor.execute(
                "ALTER FUNCTION audit_purge_before(timestamptz, tid, tid, bigint[]) "
                f"SET governance.audit_floor_days = '{days}'"
            )


class _PortableAuditGuard:
    """SQLite: the trail's deletes are not guarded and there is no function to hold a floor."""

    def permit(self, cursor: Any, *, on: bool) -> None:
        return None

    def floor_sync(self, *, using: str) -> None:
        return None


_guard: PerDatabase[_PostgresAuditGuard | _PortableAuditGuard] = PerDatabase(
    postgresql=_PostgresAuditGuard(), portable=_PortableAuditGuard()
)


@contextmanager
def audit_purge_allowed() -> Iterator[None]:
    """Inside this block, in this transaction only, the trigger lets DELETE through: on
    PostgreSQL only for the table's owner (migrations, tests, benchmarks; the app role goes
    through AuditDefinerPurge). On SQLite deletes are not guarded."""
    guard = _guard()
    with transaction.atomic():
        with connection.cursor() as cursor:
            guard.permit(cursor, on=True)
        yield
        # On an error the rollback (to this savepoint, or of the whole transaction) undoes
        # the setting with everything else.
        with connection.cursor() as cursor:
            guard.permit(cursor, on=False)


# Audit rows about retention policies are never purged, by any policy: they are the record of
# who set the periods under which everything else went (and they name no subject). The
# services write the first, the admin's own audit the second; audit_purge_before (migration
# 0008) names the same two.
POLICY_TARGET_TYPES = ("retention_policy", "retention.retentionpolicy")


class AuditDefinerPurge:
    """PostgreSQL: the audit trail's rows go through audit_purge_before / audit_purge_subject
    (SECURITY DEFINER, owned by the migrating role), the only way past the trigger for the
    app role. The other implementation is the ORM delete inside audit_purge_allowed."""

    def range_chunk(
        self,
        cursor: Any,
        *,
        table: str,
        lo: str,
        hi: str,
        where: str,
        params: Sequence[Any],
        cutoff: datetime,
    ) -> int:
        """Deletes, in the ctid range [lo, hi), the rows older than `cutoff` that `where`
        selects. The function deletes by range and age; what `where` leaves out (a policy's
        condition, held subjects) is passed as the ids to keep, read as the caller."""
        cursor.execute(
            "SELECT audit_purge_before(%s, %s::tid, %s::tid, ARRAY("  # noqa: S608 - names from _meta
            f"SELECT id FROM {table} WHERE ctid >= %s::tid AND ctid < %s::tid AND at < %s "
            f"AND NOT coalesce(({where}), false)))",
            [cutoff, lo, hi, lo, hi, cutoff, *params],
        )
        return int(cursor.fetchone()[0])

    def subject(self, *, subject_key: str, using: str = "default") -> int:
        """A person's erasure: their rows go, except the record of their rights requests."""
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute("SELECT audit_purge_subject(%s)", [subject_key])
            return int(cursor.fetchone()[0])


def audit_floor_sync(*, using: str = "default") -> None:
    """Writes RETENTION_MINIMUM_ACCOUNTABILITY_DAYS into audit_purge_before's own settings,
    where the app role cannot change it (run as the owner, after every `migrate`)."""
    _guard(using).floor_sync(using=using)
