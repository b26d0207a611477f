"""Durable consent writes through gunicorn against a raw SQL upsert, same run, same machine.

    uv run python bench/writes.py [--seconds 10] [--clients 8] [--workers 3] [--threads 4]

Uses its own PostgreSQL database (BENCH_WRITES_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/gov_bench_writes; dropped and re-created each run).
  1. baseline: the same number of client processes each run a single-row
     `INSERT ... ON CONFLICT DO UPDATE` in autocommit (one fsync'd commit per row);
  2. ours: gunicorn serves the real app; client processes POST /api/v1/consents (one
     decision each: ledger event, state, proof context, outbox event and audit row in one
     transaction, plus the after-commit dispatch to the Redis broker);
  3. diagnostic: the same clients call consent_record in-process, without HTTP.
Prints writes/s for both and the ratio, then counts ledger and outbox rows against the 201
answers: none may be lost. Budget: at least 500 writes/s sustained.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import recreate_database  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gov_bench_writes"
ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "bench-secret-key-long-enough-for-the-production-minimum-0123456789",
    "SUBJECT_HASH_KEY": "bench-subject-hash-key-0123456789abcdef",
    # The bench speaks plain http to gunicorn on loopback.
    "SECURE_SSL_REDIRECT": "0",
    "SUBJECT_ENCRYPTION_KEY": "YmVuY2gtc3ViamVjdC1lbmNyeXB0aW9uLWtleS0zMmI",
    "ALLOWED_HOSTS": "127.0.0.1",
    "LOG_LEVEL": "WARNING",
    "DJANGO_SETTINGS_MODULE": "governance.settings",
    # The production shape: Redis for cache, rate limits and the broker. Without it the
    # after-commit dispatch would publish through the embedded SQLite broker, whose file
    # lock serialises every writer.
    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
    "VAR_DIR": os.environ.get("BENCH_VAR_DIR", "/tmp/gov-bench-writes"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(url: str) -> str:
    """Migrates, seeds one purpose and returns a consent:write key."""
    os.environ.update(ENV)
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from governance import services as governance_services
    from tests import factories

    call_command("migrate", verbosity=0)
    factories.purpose("analytics")
    _, key = governance_services.api_client_create(name="bench", scopes=["consent:write"])
    connections.close_all()
    return key


# --- the baseline: raw single-row upserts ----------------------------------------------


def _upsert_client(url: str, n: int, seconds: float, start: float, out: Any) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < start:
            time.sleep(0.001)
        done, deadline = 0, start + seconds
        while time.time() < deadline:
            conn.execute(
                "INSERT INTO bench_upsert (k, v, at) VALUES (%s, %s, now()) "
                "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, at = EXCLUDED.at",
                [f"c{n}-{done}", done],
            )
            done += 1
    out.put((done, time.process_time()))


def baseline(url: str, clients: int, seconds: float) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_upsert")
        conn.execute("CREATE TABLE bench_upsert (k text PRIMARY KEY, v int, at timestamptz)")
    return _run_clients(_upsert_client, url, clients, seconds)


# --- ours: consent writes over HTTP ----------------------------------------------------


class _KeepAliveClient:
    """A minimal HTTP/1.1 client over one kept-alive socket: the load generator should cost
    as little CPU as it can, since it shares the machine's two cores with the server."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.head = (
            "POST /api/v1/consents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            "Content-Length: {length}\r\n\r\n"
        )
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def post(self, body: bytes) -> int:
        for attempt in (1, 2):
            try:
                self.sock.sendall(self.head.format(length=len(body)).encode() + body)
                status = int(self.reader.readline().split(b" ", 2)[1])
                break
            except (OSError, IndexError, ValueError):
                # The server closed an idle kept-alive connection: reconnect once.
                if attempt == 2:
                    raise
                self._connect()
        length, close = 0, False
        while (line := self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection" and value.strip().lower() == b"close":
                close = True
        self.reader.read(length)
        if close:
            self.sock.close()
            self._connect()
        return status


def _consent_client(target: str, n: int, seconds: float, start: float, out: Any) -> None:
    port, key, phase = target.split("|")
    client = _KeepAliveClient(int(port), key)
    while time.time() < start:
        time.sleep(0.001)
    ok = failed = 0
    deadline = start + seconds
    while time.time() < deadline:
        i = ok + failed
        body = (
            f'{{"subject_id": "bench-{phase}-{n}-{i}", "decisions": '
            f'[{{"purpose": "analytics", "granted": {"true" if i % 3 else "false"}}}]}}'
        ).encode()
        if client.post(body) == 201:
            ok += 1
        else:
            failed += 1
    out.put((ok if not failed else -failed - 1_000_000 * ok, time.process_time()))


def _service_client(url: str, n: int, seconds: float, start: float, out: Any) -> None:
    """The same write without HTTP: consent_record called in-process (diagnostic)."""
    import django

    django.setup()
    from consent import services
    from governance.actors import Actor

    # One untimed write first: connections to PostgreSQL and the broker are made here.
    services.consent_record(
        subject_id=f"bench-svc-warm-{n}",
        decisions=[services.DecisionInput(purpose="analytics", granted=True)],
        actor=Actor.system("bench"),
    )
    while time.time() < start:
        time.sleep(0.001)
    done, deadline = 0, start + seconds
    while time.time() < deadline:
        services.consent_record(
            subject_id=f"bench-svc-{n}-{done}",
            decisions=[services.DecisionInput(purpose="analytics", granted=done % 3 != 0)],
            actor=Actor.system("bench"),
        )
        done += 1
    out.put((done, time.process_time()))


def _run_clients(
    fn: Any, target: str, clients: int, seconds: float, lead_seconds: float = 1.0
) -> float:
    out: Any = mp.Queue()
    # Everyone starts the clock together, after `lead_seconds` to get ready.
    start = time.time() + lead_seconds
    procs = [mp.Process(target=fn, args=(target, n, seconds, start, out)) for n in range(clients)]
    for p in procs:
        p.start()
    reported = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    results = [count for count, _ in reported]
    if any(r < 0 for r in results):
        raise SystemExit(f"some writes failed: {results}")
    _run_clients.total = sum(results)  # type: ignore[attr-defined]
    _run_clients.client_cpu = sum(cpu for _, cpu in reported)  # type: ignore[attr-defined]
    return sum(results) / seconds


def _cpu_seconds(server_group: int) -> tuple[float, float]:
    """CPU seconds used so far by the gunicorn process group and by PostgreSQL's processes
    (all of them: the benchmark has the machine to itself), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    server = postgres = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if comm == "postgres":
            postgres += used
        elif int(fields[2]) == server_group:
            server += used
    return server, postgres


def _gunicorn(url: str, port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **ENV, "DATABASE_URL": url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "governance.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            "--preload",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    # As the Dockerfile serves: three workers of four threads (threads keep connections
    # alive).
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    url = os.environ.get("BENCH_WRITES_DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    key = _setup(url)

    base = baseline(url, args.clients, args.seconds)
    base_total = _run_clients.total  # type: ignore[attr-defined]

    port = _free_port()
    server = _gunicorn(url, port, args.workers, args.threads)
    try:
        # Warm-up (not timed): every worker connects to PostgreSQL and the broker once.
        _run_clients(_consent_client, f"{port}|{key}|warm", args.clients, 2)
        warm_total = _run_clients.total  # type: ignore[attr-defined]
        server_before, pg_before = _cpu_seconds(server.pid)
        ours = _run_clients(_consent_client, f"{port}|{key}|run", args.clients, args.seconds)
        server_after, pg_after = _cpu_seconds(server.pid)
        ours_total = _run_clients.total  # type: ignore[attr-defined]
        client_cpu = _run_clients.client_cpu  # type: ignore[attr-defined]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    from django.db import connections

    connections.close_all()
    service = _run_clients(_service_client, url, args.clients, args.seconds, lead_seconds=15)
    service_total = _run_clients.total + args.clients  # type: ignore[attr-defined]
    from governance.celery import app as celery_app

    # No worker ran: drop the queued dispatch messages so they do not wait in the broker.
    celery_app.control.purge()

    from consent.models import ConsentEvent, ConsentState
    from governance.models import AuditEvent, OutboxEvent

    events = ConsentEvent.objects.count()
    outbox = OutboxEvent.objects.count()
    states = ConsentState.objects.count()
    audits = AuditEvent.objects.filter(action="consent.record").count()
    lost = warm_total + ours_total + service_total - events
    print(f"clients: {args.clients} processes, {args.seconds:.0f} s each phase")
    print(f"baseline raw upsert : {base:9.0f} writes/s ({base_total} rows)")
    print(
        f"consent writes      : {ours:9.0f} writes/s ({ours_total} x 201) "
        f"via gunicorn, {args.workers} workers"
    )
    print(f"ratio (ours/raw)    : {ours / base:9.2f}  (budget: >= 500 writes/s)")
    per_write = 1000 / max(ours_total, 1)
    print(
        f"CPU per write       : gunicorn {(server_after - server_before) * per_write:.1f} ms, "
        f"PostgreSQL {(pg_after - pg_before) * per_write:.1f} ms, "
        f"clients {client_cpu * per_write:.1f} ms (2 cores: 2,000 ms of CPU a second)"
    )
    print(
        f"diagnostic: the same writes in-process, no HTTP: {service:.0f} writes/s "
        f"({service / base:.2f} of raw)"
    )
    print(
        f"ledger rows: {events}, outbox rows: {outbox}, states: {states}, "
        f"audit rows: {audits} (incl. {warm_total} warm-up and {service_total} in-process "
        f"writes); lost: {lost}"
    )
    if lost or outbox != events or states != events or audits != events:
        raise SystemExit("rows lost or inconsistent")


if __name__ == "__main__":
    main()
