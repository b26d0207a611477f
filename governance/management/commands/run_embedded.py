"""Runs web (gunicorn), a Celery worker and Celery beat together, as `make run` does.

For local use only: gunicorn faces clients directly here, and slow clients can hold all of
its threads. Production puts nginx in front (deploy/nginx/, docs/deploy-nginx.md).

All three share the embedded defaults (SQLite in WAL mode, the SQLAlchemy broker on its own
SQLite file) unless the environment says otherwise. Ctrl-C stops all three; if one dies,
the others are stopped too, so a half-running stack never passes for a working one. If this
process itself is killed outright (SIGKILL, so no handler runs), each child is sent SIGTERM
by the kernel (PR_SET_PDEATHSIG): gunicorn's workers follow their master, and Celery's
prefork children already carry their own death signal (SIGKILL) towards the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
        die_with_us = _die_with_parent()
        procs = {
            name: subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_us)
            for name, cmd in commands.items()
        }
        self.stdout.write(
            f"Serving on http://{options['host']}:{options['port']} "
            "(API docs at /api/docs/, admin at /admin/); worker and beat running. Ctrl-C stops.\n"
            "For local use only: gunicorn faces clients directly here. In production put "
            "nginx in front of it (deploy/nginx/, see docs/deploy-nginx.md)."
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
