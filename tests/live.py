"""Real processes for tests about tasks and webhooks: a Celery worker and an HTTP receiver.

Both bind or talk only to loopback; every fixture that starts one stops it at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from governance.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, what: str = "condition") -> Any:
    """Polls until `predicate` is truthy (a real process is being waited for, not slept on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Receiver:
    """An HTTP server on loopback that records every POST. `respond(body) -> (status, delay)`.

    With `tls` (a server context), it speaks HTTPS.
    """

    def __init__(self, port: int | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.respond: Callable[[dict[str, Any]], tuple[int, float]] = lambda body: (200, 0.0)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw)
                status, delay = receiver.respond(body)
                if delay:
                    time.sleep(delay)
                with receiver.lock:
                    receiver.received.append(
                        {
                            "raw": raw,
                            "body": body,
                            "headers": dict(self.headers),
                            "path": self.path,
                            "status": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if 200 <= r["status"] < 300]


@contextmanager
def celery_worker(**extra_env: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery -A governance worker` on the test database and the configured broker."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL or "",
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or "",
        **extra_env,
    }
    celery_app.control.purge()
    log = open(Path(settings.VAR_DIR) / "test-worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "governance",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "6",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        result = celery_app.send_task("governance.ping", args=["up"])
        assert result.get(timeout=60) == "pong:up"
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@contextmanager
def broker_down() -> Iterator[None]:
    """Points this process's Celery producer at a closed port, as if the broker were down."""
    previous = celery_app.conf.broker_url
    _repoint(f"redis://127.0.0.1:{free_port()}/0")
    try:
        yield
    finally:
        _repoint(previous)


def _repoint(url: str) -> None:
    # Dropped, not closed: kombu's global producer pools may still hand out the old ones.
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
