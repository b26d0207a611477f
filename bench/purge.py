"""Purge benchmark: the retention task against one raw DELETE, on the same data, same run.

    uv run python bench/purge.py [--rows 2000000] [--batch 10000]

Uses its own PostgreSQL database (BENCH_PURGE_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/gov_bench_purge; created and migrated if missing).
Seeds N audit rows, half of them past their retention period (time-ordered, as an audit log
is written), then:
  1. runs the `retention.enforce` task (chunked, each chunk its own transaction) while a
     thread keeps recording consents, and measures those writes' latency;
  2. seeds the same data again and times one `DELETE ... WHERE at < cutoff`;
  3. measures the consent writes alone, with no purge running.
Prints rows/s for both purges, their ratio (budget: within 1.2x) and the writes' p99 during
the purge against without it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gov_bench_purge"
# The audit trail's period: at its accountability minimum (6 years), which no policy may go
# below; the expired half is seeded 3000 days old.
KEEP_DAYS = 2192


def _setup() -> None:
    url = os.environ.get("BENCH_PURGE_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    # Bench in-process: no external databases, tasks run eagerly in this process.
    os.environ["RETENTION_EXTERNAL_DATABASES"] = ""
    os.environ["RETENTION_EXTERNAL_TABLES"] = "[]"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


SEED = """
INSERT INTO governance_auditevent
    (at, actor_type, actor_id, actor_label, actor_key, action, target_type, target_id, ip_hash,
     detail)
SELECT CASE WHEN g <= %(expired)s THEN now() - interval '3000 days' ELSE now() END
           + g * interval '1 millisecond',
       'system', '', 'bench', '', 'consent.record', 'receipt', md5(g::text), '',
       jsonb_build_object('subject_key', md5(g::text), 'events', 1)
FROM generate_series(1, %(rows)s) g
"""


def _seed(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE governance_auditevent")
        cursor.execute(SEED, {"rows": rows, "expired": rows // 2})
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE governance_auditevent")


def _write_loop(prefix: str, stop: Any, out: Any) -> None:
    """In its own process (as a web worker would be): records consents until told to stop."""
    from django.db import connections

    from consent import services

    connections.close_all()  # never share the parent's socket
    latencies, errors, i = [], 0, 0
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            services.consent_record(
                subject_id=f"{prefix}-{os.getpid()}-{i}",
                decisions=[services.DecisionInput("analytics", True)],
                actor=services.Actor.system("bench"),
            )
        except Exception:
            errors += 1
        latencies.append(time.perf_counter() - t0)
        i += 1
    out.put((latencies, errors))


class Writer:
    def __init__(self, prefix: str) -> None:
        from django.db import connections

        ctx = mp.get_context("fork")
        connections.close_all()
        self.stop = ctx.Event()
        self.out = ctx.Queue()
        self.proc = ctx.Process(target=_write_loop, args=(prefix, self.stop, self.out))
        self.latencies: list[float] = []
        self.errors = 0

    def start(self) -> None:
        self.proc.start()

    def finish(self) -> None:
        self.stop.set()
        self.latencies, self.errors = self.out.get(timeout=120)
        self.proc.join(timeout=60)


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument(
        "--compare-pk", action="store_true", help="also time chunks picked by primary key"
    )
    args = parser.parse_args()
    _setup()

    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    from consent.models import Purpose
    from retention.models import PurgeRun, RetentionPolicy
    from retention.tasks import retention_enforce_task
    from tests import factories

    if not Purpose.objects.filter(key="analytics").exists():
        factories.purpose("analytics")
    RetentionPolicy.objects.update(enabled=False)
    policy, _ = RetentionPolicy.objects.update_or_create(
        name="bench: audit",
        defaults={
            "target": "governance.AuditEvent",
            "keep_for": timedelta(days=KEEP_DAYS),
            "batch_size": args.batch,
            "enabled": True,
            "condition": {},
        },
    )
    expired = args.rows // 2
    print(
        f"purge bench: {args.rows:,} audit rows, {expired:,} past retention, chunks of "
        f"{args.batch:,}"
    )

    def task_purge() -> tuple[float, int]:
        t0 = time.perf_counter()
        result = retention_enforce_task.apply().get()
        seconds = time.perf_counter() - t0
        item = PurgeRun.objects.get(pk=result["run_id"]).items.get(policy=policy)
        assert item.removed == expired, (item.removed, item.error)
        return seconds, item.chunks

    # 1. The task alone (after one warm-up run on an empty table: imports, app set-up).
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE governance_auditevent")
    retention_enforce_task.apply().get()
    _seed(args.rows)
    task_seconds, chunks = task_purge()

    # 2. One raw DELETE on the same data.
    _seed(args.rows)
    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # The audit trail's trigger lets DELETE through only with this transaction's permit
        # (the task's chunks take the same one), so both pay the same per-row trigger.
        cursor.execute("SELECT set_config('governance.audit_purge', 'on', true)")
        cursor.execute(
            "DELETE FROM governance_auditevent WHERE at < now() - make_interval(days => %s)",
            [KEEP_DAYS],
        )
        raw_removed = cursor.rowcount
    raw_seconds = time.perf_counter() - t0
    assert raw_removed == expired

    # 2b. For reference: the same chunks picked by primary key (random page order).
    pk_seconds = None
    if args.compare_pk:
        from governance.audit import audit_purge_allowed
        from governance.models import AuditEvent
        from retention import engine

        _seed(args.rows)
        t0 = time.perf_counter()
        cutoff = timezone.now() - timedelta(days=KEEP_DAYS)
        removed = engine.KeyOrderWalk().delete(
            AuditEvent.objects.filter(at__lt=cutoff),
            batch_size=args.batch,
            on_chunk=lambda _: None,
            guard=audit_purge_allowed,
        )
        pk_seconds = time.perf_counter() - t0
        assert removed == expired, removed

    # 3. The task again, with consent writes going on in another process.
    _seed(args.rows)
    writer = Writer("during")
    writer.start()
    time.sleep(0.5)
    loaded_seconds, _ = task_purge()
    writer.finish()

    # 4. Consent writes with no purge running.
    quiet = Writer("quiet")
    quiet.start()
    time.sleep(max(args.baseline_seconds, loaded_seconds))
    quiet.finish()

    task_rate = expired / task_seconds
    raw_rate = expired / raw_seconds
    print(
        f"retention.enforce task : {task_rate:>12,.0f} rows/s ({task_seconds:.2f} s, "
        f"{chunks} chunks)"
    )
    print(f"one raw DELETE         : {raw_rate:>12,.0f} rows/s ({raw_seconds:.2f} s)")
    print(f"ratio (raw / task)     : {raw_rate / task_rate:>12.2f}x  (budget 1.2x)")
    if pk_seconds is not None:
        print(
            f"chunks by primary key  : {expired / pk_seconds:>12,.0f} rows/s ({pk_seconds:.2f} s)"
        )
    print(f"task under write load  : {expired / loaded_seconds:>12,.0f} rows/s")
    print(
        f"consent writes p99     : {p99(writer.latencies) * 1000:>9.1f} ms during the purge "
        f"({len(writer.latencies)} writes, {writer.errors} errors)"
    )
    print(
        f"consent writes p99     : {p99(quiet.latencies) * 1000:>9.1f} ms without it "
        f"({len(quiet.latencies)} writes, {quiet.errors} errors)"
    )


if __name__ == "__main__":
    main()
