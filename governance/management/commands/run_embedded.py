"""Runs web (gunicorn), a Celery worker and Celery beat together, as `make run` does.

For local use only: gunicorn faces clients directly here, and slow clients can hold all of
its threads. Production puts nginx in front (deploy/nginx/, docs/deploy-nginx.md).

All three share the embedded defaults (SQLite in WAL mode, the SQLAlchemy broker on its own
SQLite file) unless the environment says otherwise. With --seed-demo it seeds the demo data
first (the consent app's `seed_demo`, called by name) and prints its output, the demo key and
admin login among it, twice: at once, and again once web answers, the worker has run a task
and beat has ticked, so it comes below their banners instead of scrolling off behind them.

Ctrl-C stops all three; if one dies, the others are stopped too, so a half-running stack
never passes for a working one. If this
process itself is killed outright (SIGKILL, so no handler runs), each child is sent SIGTERM
by the kernel (PR_SET_PDEATHSIG): gunicorn's workers follow their master, and Celery's
prefork children already carry their own death signal (SIGKILL) towards the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and Celery beat in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument(
            "--seed-demo",
            action="store_true",
            help="Seed the demo data first; print its credentials again once all is up.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        py = sys.executable
        commands = {
            "web": [
                py,
                "-m",
                "gunicorn",
                "governance.wsgi:application",
                "--bind",
                f"{options['host']}:{options['port']}",
                "--workers",
                os.environ.get("WEB_CONCURRENCY", "2"),
                "--threads",
                "4",
                "--access-logfile",
                "-",
                "--logger-class",
                "governance.logging.RedactingGunicornLogger",
                "--no-control-socket",
            ],
            "worker": [
                py,
                "-m",
                "celery",
                "-A",
                "governance",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--hostname",
                "embedded@%h",
            ],
            "beat": [
                py,
                "-m",
                "celery",
                "-A",
                "governance",
                "beat",
                "--loglevel",
                "INFO",
            ],
        }
        seeded = ""
        if options["seed_demo"]:
            out = io.StringIO()
            call_command("seed_demo", stdout=out)
            seeded = out.getvalue()
            self._say(seeded.rstrip("\n"))
        _declare_queues()
        started_at = time.time()
        # Unbuffered, so each banner reaches the terminal (or a log file) when it is printed
        # and the ready message below lands after it.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Each in its own process group, so stopping one stops its children too (gunicorn's
        # and Celery's workers) and nothing is left holding the port.
        die_with_us = _die_with_parent()
        procs = {
            name: subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=die_with_us)
            for name, cmd in commands.items()
        }
        base = f"http://{options['host']}:{options['port']}"
        self._say(f"Starting web on {base}, a Celery worker and beat. Ctrl-C stops.")
        ready = (
            f"Ready: serving on {base} (API docs at /api/docs/, admin at /admin/); worker and "
            "beat running. Ctrl-C stops.\n"
            "For local use only: gunicorn faces clients directly here. In production put "
            "nginx in front of it (deploy/nginx/, see docs/deploy-nginx.md).\n" + seeded
        )
        stopping = False
        threading.Thread(
            target=self._announce_when_ready,
            args=(base, started_at, ready.rstrip("\n"), lambda: stopping),
            daemon=True,
        ).start()

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping the rest.")
                    exit_code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.5)
        for proc in procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Whatever is left of the group (a worker stuck in a request) is killed.
            _signal_group(proc, signal.SIGKILL)
        if exit_code:
            sys.exit(exit_code)

    def _say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _announce_when_ready(
        self, base: str, started_at: float, message: str, stopping: Callable[[], bool]
    ) -> None:
        """Prints `message` once web answers /healthz, the worker has run a ping task (its
        banner comes before it consumes) and beat has ticked since the start (its banner
        comes before its first tick)."""
        from governance.tasks import ping_task

        heartbeat = settings.BEAT_HEARTBEAT_FILE
        pending = {"web", "worker", "beat"}
        ping = None
        deadline = time.monotonic() + 600
        while pending and not stopping() and time.monotonic() < deadline:
            if "web" in pending and _answers(f"{base}/healthz"):
                pending.discard("web")
            beat_ticked = heartbeat.exists() and heartbeat.stat().st_mtime >= started_at
            if "beat" in pending and beat_ticked:
                pending.discard("beat")
            if "worker" in pending:
                ping = ping or ping_task.delay("ready")
                if ping.ready():
                    pending.discard("worker")
            time.sleep(0.5)
        if not pending and not stopping():
            self._say(message)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGTERM the child when this process dies.

    Without it a SIGKILLed `make run` leaves gunicorn, the Celery worker and beat running,
    each in its own session, still holding the port and the SQLite files. libc is looked up
    here, before the fork: the child between fork and exec should do as little as possible.
    Outside Linux there is no such call and nothing is done.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own URL)
            return bool(response.status == 200)
    except OSError:
        return False


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _declare_queues() -> None:
    """Creates the broker's queues once, before web, worker and beat start.

    On kombu's SQLAlchemy transport each process creates a queue row on first use; started
    together they race for it and the loser (the worker, fatally) hits a UNIQUE violation.
    """
    from governance.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
