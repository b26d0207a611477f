"""Runs web (gunicorn), a Celery worker and Celery beat together, as `make run` does.

All three share the embedded defaults (SQLite in WAL mode, the SQLAlchemy broker on its own
SQLite file) unless the environment says otherwise. Ctrl-C stops all three; if one dies,
the others are stopped too, so a half-running stack never passes for a working one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and Celery beat in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))

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
                "--schedule",
                os.path.join(os.environ.get("VAR_DIR", "var"), "celerybeat"),
            ],
        }
        _declare_queues()
        # Each in its own process group, so stopping one stops its children too (gunicorn's
        # and Celery's workers) and nothing is left holding the port.
        procs = {
            name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()
        }
        self.stdout.write(
            f"Serving on http://{options['host']}:{options['port']} "
            "(API docs at /api/docs/, admin at /admin/); worker and beat running. Ctrl-C stops."
        )
        stopping = False

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
