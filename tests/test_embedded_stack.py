"""`make run`'s stack end to end: web, worker and beat on SQLite and the SQLAlchemy broker.

Starts the real processes in a temporary VAR_DIR, records a consent through the API, finds it
in the admin, and round-trips a Celery task through the embedded broker and worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def embedded_env(var_dir: Path, port: int) -> dict[str, str]:
    # A clean environment: nothing of the test run's PostgreSQL/Redis settings leaks in.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "DEBUG": "1",
        "VAR_DIR": str(var_dir),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }


def manage(env: dict[str, str], *args: str, timeout: int = 120) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_until(predicate, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def make_run_command(port: int) -> list[str]:
    """`make run`'s last line, as the Makefile has it, run with this interpreter."""
    (recipe,) = re.findall(r"^run:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    command = recipe.strip().splitlines()[-1].split("manage.py", 1)[1].split()
    assert command[:1] == ["run_embedded"] and "--seed-demo" in command
    return [sys.executable, "manage.py", "run_embedded", "--port", str(port), "--seed-demo"]


def test_embedded_stack_serves_records_and_runs_tasks(tmp_path):
    port = free_port()
    env = embedded_env(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    manage(env, "migrate", "--no-input", "-v", "0")

    log_path = tmp_path / "stack.log"
    with log_path.open("w") as log:
        stack = subprocess.Popen(
            make_run_command(port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "Ready: serving on" in log_path.read_text(), 180, "the ready message")
        started = log_path.read_text()
        key = re.search(r"(sk_[A-Za-z0-9_-]+)", started).group(1)
        password = re.search(r"password '([^']+)'", started).group(1)
        assert "shown once" in started
        # The demo key and admin login come again below the worker's and beat's banners,
        # where the newcomer sees them, not only above them.
        ready_at = started.index("Ready: serving on")
        for banner in ("[queues]", "beat: Starting...", "celery beat v"):
            assert -1 < started.find(banner) < ready_at, f"{banner!r} not before the ready note"
        assert key in started[ready_at:] and f"password '{password}'" in started[ready_at:]
        assert started.count(key) == 2
        # Beat's heartbeat file, which docker-compose.yml's health check of beat reads.
        assert (tmp_path / "beat-heartbeat").stat().st_mtime > time.time() - 60
        assert "sk_" not in manage(env, "seed_demo")  # credentials are printed only once

        wait_until(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, "healthz")
        ready = requests.get(f"{base}/readyz", timeout=60)
        assert ready.status_code == 200, ready.text

        identifier = f"embedded-{uuid.uuid4().hex}"
        auth = {"Authorization": f"Bearer {key}"}
        recorded = requests.post(
            f"{base}/api/v1/consents",
            json={
                "subject_id": identifier,
                "decisions": [{"purpose": "analytics", "granted": True}],
                "indication_method": "button",
            },
            headers=auth,
            timeout=60,
        )
        assert recorded.status_code == 201, recorded.text
        consents = requests.get(
            f"{base}/api/v1/subjects/{identifier}/consents", headers=auth, timeout=10
        ).json()["consents"]
        assert consents[0]["purpose"] == "analytics" and consents[0]["status"] == "granted"

        # A chunked body (no Content-Length), as streaming HTTP clients send, is read whole.
        chunked = requests.post(
            f"{base}/api/v1/consents",
            data=iter(
                [
                    b'{"subject_id": "chunked-1", "indication_method": "button", ',
                    b'"decisions": [{"purpose": "analytics", "granted": false}]}',
                ]
            ),
            headers={**auth, "Content-Type": "application/json"},
            timeout=60,
        )
        assert chunked.status_code == 201, chunked.text

        # SQLite takes the ORM write path (PostgreSQL the prepared one): a second write to
        # the same subject continues its chain and its outbox sequence.
        withdrawn = requests.post(
            f"{base}/api/v1/subjects/{identifier}/withdrawals",
            json={"purposes": ["analytics"]},
            headers=auth,
            timeout=60,
        )
        assert withdrawn.status_code in (200, 201), withdrawn.text
        assert withdrawn.json()["events"][0]["action"] == "withdrawn"
        assert "0 breaks" in manage(env, "verify_ledger")
        sequences = manage(
            env,
            "shell",
            "-c",
            "from consent.identity import subject_key; from governance.models import "
            "OutboxEvent; print(sorted(OutboxEvent.objects.filter("
            f"subject_key=subject_key('{identifier}')).values_list('seq', flat=True)))",
        )
        assert "[1, 2]" in sequences

        admin = requests.Session()
        login_page = admin.get(f"{base}/admin/login/", timeout=60)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
        admin.post(
            f"{base}/admin/login/?next=/admin/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/admin/login/"},
            timeout=60,
        )
        events_page = admin.get(f"{base}/admin/consent/consentevent/", timeout=60)
        assert events_page.status_code == 200
        assert recorded.json()["events"][0]["event_id"] in events_page.text or (
            "analytics" in events_page.text and "Granted" in events_page.text
        )
        lookup = admin.get(f"{base}/admin/consent/subject/", params={"q": identifier}, timeout=60)
        assert re.search(r"\b1 subject\b", lookup.text), "admin lookup by identifier failed"

        pong = manage(
            env,
            "shell",
            "-c",
            "from governance.tasks import ping_task; print(ping_task.delay('rt').get(timeout=60))",
            timeout=120,
        )
        assert "pong:rt" in pong
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert "/api/v1/subjects/<redacted>/consents" in output  # access log written...
    assert identifier not in output  # ...without the identifier


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process from /proc, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


def _descendants(roots: set[int]) -> dict[int, str]:
    """Every live process below `roots` (pid -> start time, against pid reuse)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[1] != "Z":
            parents[int(entry.name)] = (stat[0], stat[2])
    found: dict[int, str] = {}
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, (ppid, _) in parents.items() if ppid in frontier} - set(found)
        found.update({pid: parents[pid][1] for pid in frontier})
    return found


def _alive(processes: dict[int, str]) -> dict[int, str]:
    """The recorded processes still running (same pid and start time, not a zombie), plus
    any process they started since."""
    alive = {
        pid: start
        for pid, start in processes.items()
        if (stat := _stat(pid)) and stat[1] != "Z" and stat[2] == start
    }
    return {**alive, **_descendants(set(alive))}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_the_embedded_stack_outright_leaves_no_child_running(tmp_path):
    port = free_port()
    env = embedded_env(tmp_path, port)
    manage(env, "migrate", "--no-input", "-v", "0")
    with (tmp_path / "stack.log").open("w") as log:
        stack = subprocess.Popen(
            [sys.executable, "manage.py", "run_embedded", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children: dict[int, str] = {}
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 60, "healthz"
        )
        # gunicorn's master and worker, Celery's worker and its two prefork children, beat.
        wait_until(lambda: len(_descendants({stack.pid})) >= 6, 60, "the whole process tree")
        children = _descendants({stack.pid})
        stack.kill()  # SIGKILL: no handler of run_embedded's runs
        stack.wait(timeout=10)
        wait_until(lambda: not _alive(children), 60, "every child to exit")
    finally:
        for pid in _alive(children) if children else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stack.pid, signal.SIGKILL)
        stack.wait(timeout=10)
