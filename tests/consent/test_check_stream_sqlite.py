"""Embedded mode: a streamed check whose upload stalls holds no SQLite lock, so consent
writes go on meanwhile. On SQLite itself, in a process of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.embedded import run_on_sqlite

pytestmark = pytest.mark.slow


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
    assert "sqlite-stream-ok" in run_on_sqlite(tmp_path, SCRIPT)
