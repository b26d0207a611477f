"""The lease and a chunked purge on the embedded SQLite database, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

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
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RETENTION_", "EXTERNAL_DATABASE_URL_", "REDIS_URL", "CELERY_"))
    }
    env.update(
        {
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "governance.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'governance.sqlite3'}",
            "VAR_DIR": str(tmp_path / "var"),
        }
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    done = subprocess.run(
        [*manage, "shell", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sqlite-ok" in done.stdout
