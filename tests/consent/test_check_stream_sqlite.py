"""Embedded mode: a streamed check whose upload stalls holds no SQLite lock, so consent
writes go on meanwhile. On SQLite itself, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
import threading

from django.conf import settings

# Before any connection opens: a write that finds the database locked fails after 3 s
# instead of the embedded 30 s (the lock is what this test is about, not the wait).
settings.DATABASES["default"]["OPTIONS"]["timeout"] = 3

from django.core.management import call_command
from django.db import connection

call_command("migrate", verbosity=0)

from consent import services
from consent.checks import services as check_services
from consent.checks.selectors import purpose_rule_get
from consent.models import Decision
from governance.actors import Actor
from tests import factories

factories.seed_purposes()
stalled, resume, outcome = threading.Event(), threading.Event(), {}


def upload():
    yield b'{"subject_id": "alice"}\\n{"subject_id": "bo'
    stalled.set()  # the client stops sending here, midway through a line
    assert resume.wait(60)
    yield b'b"}\\n'


def stream():
    try:
        check = check_services.StreamCheck(
            actor=Actor.system("test"), rule=purpose_rule_get("analytics")
        )
        check.consume(upload())
        outcome["lines"] = b"".join(check.answers()).decode().splitlines()
    except BaseException as exc:
        outcome["error"] = repr(exc)
    finally:
        connection.close()


reader = threading.Thread(target=stream)
reader.start()
assert stalled.wait(60)
try:
    # Another request's consent write, while the upload is stalled.
    services.consent_record(
        subject_id="alice",
        decisions=[services.DecisionInput(purpose="analytics", granted=True)],
        actor=Actor.system("test"),
        indication_method="button",
    )
finally:
    resume.set()
reader.join(60)
assert "error" not in outcome, outcome
answers = [json.loads(line) for line in outcome["lines"]]
assert [(a["subject_id"], a["allowed"]) for a in answers[:2]] == [
    ("alice", True),
    ("bob", False),
], answers
assert Decision.objects.get().status == "complete"
print("sqlite-stream-ok")
"""


def test_stalled_stream_upload_does_not_block_consent_writes_on_sqlite(tmp_path: Path) -> None:
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
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sqlite-stream-ok" in done.stdout
