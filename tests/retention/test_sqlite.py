"""The lease and a chunked purge on the embedded SQLite database, in a process of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.embedded import run_on_sqlite

pytestmark = pytest.mark.slow


SCRIPT = """
from datetime import timedelta
from django.utils import timezone
from governance.models import AuditEvent
from retention.services import enforcement, lease
from retention.models import PurgeRun, RetentionPolicy

now = timezone.now()
policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
RetentionPolicy.objects.filter(pk=policy.pk).update(batch_size=7)
AuditEvent.objects.bulk_create(
    AuditEvent(at=now - timedelta(days=7 * 365), actor_type="system", action="old", detail={})
    for _ in range(50)
)
AuditEvent.objects.create(at=now, actor_type="system", action="new", detail={})
assert lease.lease_acquire(
    name=lease.ENFORCE_LEASE, holder="other", now=now, ttl=timedelta(minutes=5)
)
skipped = enforcement.retention_enforce(now=now, policy_ids=[policy.pk]).run
assert skipped.status == PurgeRun.Status.SKIPPED, skipped.status
assert AuditEvent.objects.filter(action="old").count() == 50
run = enforcement.retention_enforce(now=now + timedelta(minutes=6), policy_ids=[policy.pk]).run
item = run.items.get()
assert run.status == PurgeRun.Status.COMPLETE, run.error
assert (item.removed, item.chunks) == (50, 8), (item.removed, item.chunks)
assert AuditEvent.objects.filter(action="old").count() == 0
assert AuditEvent.objects.filter(action="new").count() == 1
print("sqlite-ok")
"""


def test_lease_and_chunked_purge_work_on_sqlite(tmp_path: Path) -> None:
    assert "sqlite-ok" in run_on_sqlite(tmp_path, SCRIPT, migrate=True)
