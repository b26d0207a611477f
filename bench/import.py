"""Batch import of consent events against a raw COPY of the same rows, same run, same machine.

    uv run python bench/import.py [--events 200000] [--per-subject 4] [--batch 5000]

Uses its own PostgreSQL database (BENCH_IMPORT_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/gov_bench_import; dropped and re-created each run).
  1. ours: a JSONL file of `--events` records (`--per-subject` per person, over two
     purposes, grants and refusals, each with its own past timestamp) goes through what
     POST /api/v1/imports and its workers do: the whole file checked, recorded in
     encrypted batches, then applied by `--workers` processes side by side (a Celery
     worker of that concurrency), batch by batch through the ledger's one write path
     (ledger_write_batch): hash chains, current states, the imported external ids, an
     audit row per batch and one `import.completed` outbox event. Timed from the file to
     the completed import.
  2. baseline: the ledger rows the import wrote, COPYed out and COPYed into a table of the
     same shape and indexes (`LIKE consent_consentevent INCLUDING ALL`): the cost of
     getting the same rows into PostgreSQL with no work besides.
Prints events/s for both and the ratio, then checks the import is complete: every event
there, every chain verifying, one state per (subject, purpose), one outbox event, the audit
rows. Budget: at least 10,000 events/s.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds, recreate_database  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gov_bench_import"
ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "bench-secret-key-long-enough-for-the-production-minimum-0123456789",
    "SUBJECT_HASH_KEY": "bench-subject-hash-key-0123456789abcdef",
    "SUBJECT_ENCRYPTION_KEY": "YmVuY2gtc3ViamVjdC1lbmNyeXB0aW9uLWtleS0zMmI",
    "ALLOWED_HOSTS": "127.0.0.1",
    "LOG_LEVEL": "WARNING",
    "DJANGO_SETTINGS_MODULE": "governance.settings",
    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
    "VAR_DIR": os.environ.get("BENCH_VAR_DIR", "/tmp/gov-bench-import"),
    # The one announcement is dispatched by the beat's sweeper; no broker needed here.
    "WEBHOOK_DISPATCH_ON_COMMIT": "0",
}
BUDGET = 10_000


def _backend_pid(cursor: Any) -> int:
    cursor.execute("SELECT pg_backend_pid()")
    return int(cursor.fetchone()[0])


def _setup(url: str) -> None:
    os.environ.update(ENV)
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command

    from tests import factories

    call_command("migrate", verbosity=0)
    factories.purpose("analytics")
    factories.purpose("ml_training")


def _write_file(path: Path, events: int, per_subject: int) -> None:
    start = datetime.now(UTC) - timedelta(days=300)
    purposes = ("analytics", "ml_training")
    with path.open("w") as out:
        for n in range(events):
            person, k = divmod(n, per_subject)
            record = {
                "subject_id": f"person-{person}@example.com",
                "purpose": purposes[k % 2],
                "granted": (k // 2) % 2 == 0,
                "effective_at": (start + timedelta(days=k, seconds=person)).isoformat(),
                "external_id": f"legacy-{n}",
            }
            out.write(json.dumps(record) + "\n")


def _apply_worker(url: str, import_id: str, go: Any, out: Any) -> None:
    """One worker applying batches (what a Celery worker process does), started and
    connected before the clock starts."""
    os.environ.update(ENV)
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.db import connection

    from consent.imports import services

    with connection.cursor() as cursor:
        backend = _backend_pid(cursor)
    out.put("ready")
    go.wait()
    cpu, db_cpu = time.process_time(), cpu_seconds(backend)
    outcome = services.import_apply(import_id=import_id)
    out.put((outcome, time.process_time() - cpu, cpu_seconds(backend) - db_cpu))


def ours(url: str, path: Path, batch: int, workers: int) -> tuple[float, str, dict[str, float]]:
    from django.db import connections

    from consent.imports import check, services
    from governance.actors import Actor

    phases: dict[str, float] = {}
    with connections["default"].cursor() as cursor:
        backend = _backend_pid(cursor)
    cpu, db_cpu = time.process_time(), cpu_seconds(backend)
    started = time.perf_counter()
    with path.open("rb") as body:
        checked = check.import_check(body=body, fmt="jsonl")
    phases["check"] = time.perf_counter() - started
    mark = time.perf_counter()
    created = services.import_create(
        actor=Actor.system("bench"), checked=checked, batch_size=batch, queue=False
    )
    phases["record"] = time.perf_counter() - mark
    phases["cpu"] = time.process_time() - cpu
    phases["db_cpu"] = cpu_seconds(backend) - db_cpu
    elapsed = time.perf_counter() - started
    connections.close_all()
    context = mp.get_context("spawn")
    out, go = context.Queue(), context.Event()
    procs = [
        context.Process(target=_apply_worker, args=(url, str(created.id), go, out))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    assert [out.get() for _ in procs] == ["ready"] * workers
    mark = time.perf_counter()
    go.set()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    phases["apply"] = time.perf_counter() - mark
    phases["cpu"] += sum(cpu for _, cpu, _ in results)
    phases["db_cpu"] += sum(db_cpu for _, _, db_cpu in results)
    # The worker that finds the last batch done completes the import; the others wait.
    assert "completed" in [outcome for outcome, _, _ in results], results
    return elapsed + phases["apply"], str(created.id), phases


def baseline(url: str) -> tuple[float, int, float]:
    """COPY the ledger's rows out, then time COPYing them into a table like the ledger;
    (seconds, rows, CPU seconds of the client and its backend)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE consent_consentevent INCLUDING ALL)")
        data = io.BytesIO()
        with conn.cursor().copy("COPY consent_consentevent TO STDOUT") as copy:
            for block in copy:
                data.write(block)
        backend = _backend_pid(conn.cursor())
        cpu, db_cpu = time.process_time(), cpu_seconds(backend)
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy("COPY bench_copy FROM STDIN") as copy:
            copy.write(data.getvalue())
        elapsed = time.perf_counter() - started
        used = time.process_time() - cpu + cpu_seconds(backend) - db_cpu
        rows = conn.execute("SELECT count(*) FROM bench_copy").fetchone()
        conn.execute("DROP TABLE bench_copy")
    return elapsed, int(rows[0]) if rows else 0, used


def check_complete(import_id: str, events: int, per_subject: int) -> list[str]:
    from consent.ledger.verify import ledger_verify
    from consent.models import ConsentEvent, ConsentImport, ConsentState, ImportedRecord
    from governance.models import AuditEvent, OutboxEvent

    done = ConsentImport.objects.get(pk=import_id)
    # Each person decides on two purposes (one when they have a single record).
    expected_states = (events // per_subject) * min(2, per_subject)
    report = ledger_verify()
    facts = {
        "import completed": done.status == "completed" and done.applied == events,
        "every event written": ConsentEvent.objects.count() == events,
        "every external id kept": ImportedRecord.objects.count() == events,
        "every chain verifies": report.events == events and not report.breaks,
        "one state per subject and purpose": ConsentState.objects.count() == expected_states,
        "one outbox event": list(OutboxEvent.objects.values_list("event_type", flat=True))
        == ["import.completed"],
        "an audit row per batch": AuditEvent.objects.filter(action="import.batch").count()
        == done.batch_count,
    }
    return [name for name, ok in facts.items() if not ok]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-subject", type=int, default=4)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="processes applying batches")
    args = parser.parse_args()
    url = os.environ.get("BENCH_IMPORT_DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    _setup(url)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "import.jsonl"
        _write_file(path, args.events, args.per_subject)
        size = path.stat().st_size
        elapsed, import_id, phases = ours(url, path, args.batch, args.workers)
    copy_elapsed, copied, copy_cpu = baseline(url)
    rate, copy_rate = args.events / elapsed, copied / copy_elapsed
    cpu = phases["cpu"] + phases["db_cpu"]
    # The machine is shared: the CPU both sides used says what two idle cores would do.
    cpu_rate, copy_cpu_rate = 2 * args.events / cpu, 2 * copied / copy_cpu
    print(f"file: {args.events:,} events, {args.per_subject} per subject, {size / 1e6:.1f} MB")
    print(
        f"ours: {rate:,.0f} events/s ({elapsed:.2f} s: check {phases['check']:.2f} s, "
        f"record {phases['record']:.2f} s, apply {phases['apply']:.2f} s with "
        f"{args.workers} workers)"
    )
    print(f"raw COPY of the same rows: {copy_rate:,.0f} rows/s ({copy_elapsed:.2f} s)")
    print(f"ratio (COPY rate / ours): {copy_rate / rate:.1f}x")
    print(
        f"CPU per event: ours {1e6 * cpu / args.events:.0f} us (Python "
        f"{1e6 * phases['cpu'] / args.events:.0f}, PostgreSQL "
        f"{1e6 * phases['db_cpu'] / args.events:.0f}), COPY {1e6 * copy_cpu / copied:.0f} us"
    )
    print(
        f"on two idle cores (2 / CPU per event): ours {cpu_rate:,.0f} events/s, "
        f"COPY {copy_cpu_rate:,.0f} rows/s, ratio {copy_cpu_rate / cpu_rate:.1f}x"
    )
    problems = check_complete(import_id, args.events, args.per_subject)
    print("complete: " + ("yes" if not problems else "NO: " + ", ".join(problems)))
    met = rate >= BUDGET
    print(
        f"budget >= {BUDGET:,} events/s: {'met' if met else 'NOT met'} by the clock, "
        f"{'met' if cpu_rate >= BUDGET else 'NOT met'} by CPU"
    )
    return 0 if met and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
