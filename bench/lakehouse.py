"""Benchmark of the lakehouse paths, each beside a baseline measured in the same run.

    .venv/bin/python bench/lakehouse.py [--rows 10000000] [--subjects 1000000] [--runs 3]
                                           [--only spark,pandas,build]

- spark: `Snapshot.filter_spark` on a local Spark (`local[2]`) over a Parquet training table
  of `--rows` rows (ids of `--subjects` people, 5% of rows people the snapshot never saw),
  against the same engine's plain semi join of the table with a Parquet list of the
  allowed ids in plaintext. Both are written to Spark's `noop` sink, so every row is made,
  after one unmeasured run each (the JIT warm); the JVM's CPU time is printed too.
- pandas: `Snapshot.filter_pandas` on the same table, loaded, against the same filter over
  plain SHA-256 of the ids computed the same way (distinct ids hashed, looked up in the
  allowed hashes, rows kept with `isin`); the plain join on plaintext ids is printed too.
- build: building a `--subjects` snapshot (`snapshot_create` then the whole build in one
  process, as one worker would) against a raw baseline in the same run: COPY out the
  states and encrypted identifiers, decrypt, decide, HMAC, write Parquet with pyarrow.
  Each runs in a fresh child process, whose peak RSS is printed.

Ours and the baseline alternate, `--runs` times each, and medians are compared, so both
meet the same machine load. Environment: BENCH_LAKEHOUSE_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/gov_bench_lakehouse), BENCH_LAKEHOUSE_DIR (the data
files; default a directory under the system's temporary directory), BENCH_RESEED=1 to
reseed the database and rewrite the files. Needs PostgreSQL and Java 17 for Spark.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients" / "python"))

from bench.common import cpu_seconds, ensure_database  # noqa: E402

BENCH_DB = os.environ.get(
    "BENCH_LAKEHOUSE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gov_bench_lakehouse"
)
DATA_DIR = Path(
    os.environ.get("BENCH_LAKEHOUSE_DIR", Path(tempfile.gettempdir()) / "bench-lakehouse")
)
os.environ.update(
    {
        "DATABASE_URL": BENCH_DB,
        "DJANGO_SETTINGS_MODULE": "governance.settings",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "SNAPSHOT_DIR": str(DATA_DIR / "snapshots"),
    }
)
os.environ.setdefault(
    "SECRET_KEY", "bench-secret-key-long-enough-for-the-production-minimum-0123456789"
)
os.environ.setdefault("SUBJECT_HASH_KEY", "bench-subject-hash-key-0123456789abcdef")
os.environ.setdefault("SUBJECT_ENCRYPTION_KEY", "YmVuY2gtc3ViamVjdC1lbmNyeXB0aW9uLWtleS0zMmI=")
os.environ.setdefault("VAR_DIR", str(DATA_DIR / "var"))
os.environ.pop("REDIS_URL", None)
# Nothing is queued: the build runs in this process. The in-memory broker takes the
# messages snapshot_create queues on commit and nobody reads them.
os.environ["CELERY_BROKER_URL"] = "memory://"

PURPOSE = "ml_training"
STRANGERS = 0.05  # share of training rows whose id the service never saw


def ident(i: int) -> str:
    return f"user-{i:08d}"


def peak_rss_mib() -> float:
    """This process's peak RSS since its exec (ru_maxrss would carry the parent's over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def paired(
    ours: Callable[[], Any],
    base: Callable[[], Any],
    runs: int,
    cpu: Callable[[], float] | None = None,
) -> tuple[float, float, list[Any]]:
    """Alternates ours and the baseline; returns the median seconds of each and ours' last
    result. With `cpu` (a process's CPU seconds so far), the median CPU time of each is
    printed too: on a machine shared with other work it moves less than the clock."""
    ours_times: list[float] = []
    base_times: list[float] = []
    cpu_times: dict[bool, list[float]] = {True: [], False: []}
    results: list[Any] = []
    for _ in range(runs):
        for fn, times in ((ours, ours_times), (base, base_times)):
            started, cpu_started = time.perf_counter(), cpu() if cpu else 0.0
            result = fn()
            times.append(time.perf_counter() - started)
            if cpu:
                cpu_times[fn is ours].append(cpu() - cpu_started)
            if fn is ours:
                results.append(result)
    print(f"  runs: ours {fmt(ours_times)}, baseline {fmt(base_times)}", flush=True)
    if cpu:
        ours_cpu, base_cpu = (statistics.median(cpu_times[k]) for k in (True, False))
        print(
            f"  CPU: ours {ours_cpu:.2f} s, baseline {base_cpu:.2f} s, "
            f"ratio {ours_cpu / base_cpu:.2f}x",
            flush=True,
        )
    return statistics.median(ours_times), statistics.median(base_times), results


def process_cpu(pid: int) -> Callable[[], float]:
    """The CPU seconds process `pid` has used so far, as a function to call."""
    return lambda: cpu_seconds(pid)


def fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times) + " s"


def verdict(ratio: float, budget: float) -> str:
    return f"{ratio:.2f}x (budget {budget}x: {'met' if ratio <= budget else 'MISSED'})"


# --- the data: a training table, a snapshot of it, the allowed ids in plaintext ------------


def allowed_of(i: int) -> bool:
    """The seed's verdict for subject i (as the database seeds it: 60% granted, 1 in 20 of
    them expired; 20% refused, 10% withdrawn, 10% nothing)."""
    return i % 10 < 6 and i % 20 != 0


def files(rows: int, subjects: int) -> dict[str, Any]:
    """Writes (once per size) the training table, a snapshot file under a fresh key and the
    plaintext allowed ids; returns their paths and the key."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from consent_client.snapshot import Hmac

    where = DATA_DIR / f"filter-{rows}-{subjects}"
    meta = where / "meta.json"
    if meta.exists() and os.environ.get("BENCH_RESEED") != "1":
        return json.loads(meta.read_text())
    where.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    key = os.urandom(32)
    ids = [ident(i) for i in range(subjects)]
    allowed = [allowed_of(i) for i in range(subjects)]
    pq.write_table(
        pa.table(
            {
                "pseudonym": pa.array(Hmac(key).many(ids), pa.binary(32)),
                "allowed": pa.array(allowed),
                "reason": pa.array(["granted" if a else "no_consent" for a in allowed]),
            }
        ),
        where / "snapshot.parquet",
    )
    pq.write_table(
        pa.table({"user_id": [i for i, a in zip(ids, allowed, strict=True) if a]}),
        where / "allowed_ids.parquet",
    )
    rng = np.random.default_rng(14)
    pool = np.array(ids + [f"stranger-{i:08d}" for i in range(int(subjects * STRANGERS) + 1)])
    with pq.ParquetWriter(
        where / "training.parquet",
        pa.schema([("user_id", pa.string()), ("x", pa.float64()), ("label", pa.int32())]),
    ) as out:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            picks = np.where(
                rng.random(n) < STRANGERS,
                rng.integers(subjects, len(pool), n),
                rng.integers(0, subjects, n),
            )
            out.write_table(
                pa.table(
                    {
                        "user_id": pool[picks],
                        "x": rng.random(n),
                        "label": rng.integers(0, 2, n, dtype=np.int32),
                    }
                )
            )
    info = {"dir": str(where), "key": key.hex()}
    meta.write_text(json.dumps(info))
    print(f"wrote the training table and snapshot in {time.perf_counter() - started:.1f} s")
    return info


def local_snapshot(info: dict[str, Any]) -> Any:
    """The client's Snapshot as it holds one once verified: the file and the key."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from consent_client import Snapshot

    path = str(Path(info["dir"]) / "snapshot.parquet")
    allowed = pq.read_table(path, columns=["allowed"])["allowed"]
    total, yes = len(allowed), pc.sum(allowed).as_py()

    details = {
        "id": "bench",
        "purpose": PURPOSE,
        "as_of": "now",
        "key": "identifier",
        "default_allowed": False,
        "counts": {"allowed": yes, "denied": total - yes},
    }
    snap = Snapshot(client=None, info=details, path=path, _key=bytes.fromhex(info["key"]))  # type: ignore[arg-type]
    snap._cleanup.detach()  # the bench's file, not a download to remove
    return snap


# --- Spark ------------------------------------------------------------------------------------


def bench_spark(info: dict[str, Any], runs: int) -> dict[str, float]:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench-lakehouse")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # The session's own first-statement set-up (about 2 s), which whichever query ran first
    # would pay: not the filter's.
    spark.sql("SELECT 1").collect()
    where = Path(info["dir"])
    snap = local_snapshot(info)
    table = spark.read.parquet(str(where / "training.parquet"))
    allowed_ids = spark.read.parquet(str(where / "allowed_ids.parquet"))

    def ours() -> None:
        snap.filter_spark(table, "user_id").write.format("noop").mode("overwrite").save()

    def plain() -> None:
        table.join(allowed_ids, "user_id", "left_semi").write.format("noop").mode(
            "overwrite"
        ).save()

    # The first call reads the deciding pseudonyms and broadcasts them (once a snapshot and
    # session); later calls reuse them. Timed on its own, and added to a run below.
    started = time.perf_counter()
    snap.filter_spark(table, "user_id")
    setup_s = time.perf_counter() - started
    ours_rows = snap.filter_spark(table, "user_id").count()
    plain_rows = table.join(allowed_ids, "user_id", "left_semi").count()
    assert ours_rows == plain_rows, (ours_rows, plain_rows)
    # One unmeasured run each: the JIT compiles both before the clock starts.
    ours()
    plain()
    gateway: Any = spark.sparkContext._jvm  # local[2]: the executors run in the driver's JVM
    jvm = int(gateway.java.lang.ProcessHandle.current().pid())
    ours_s, plain_s, _ = paired(ours, plain, runs, process_cpu(jvm))
    spark.stop()
    ratio = ours_s / plain_s
    print(f"spark local[2]: filter_spark {ours_s:.2f} s, plain semi join {plain_s:.2f} s")
    print(f"  rows kept {ours_rows:,}; ratio {verdict(ratio, 1.5)}", flush=True)
    first = (ours_s + setup_s) / plain_s
    print(f"  first call's setup {setup_s:.2f} s; a first filter with it: {first:.2f}x", flush=True)
    return {
        "spark_ours": ours_s,
        "spark_plain": plain_s,
        "spark_ratio": ratio,
        "spark_setup": setup_s,
        "spark_first_ratio": first,
    }


# --- pandas -----------------------------------------------------------------------------------


def bench_pandas(info: dict[str, Any], runs: int) -> dict[str, float]:
    import hashlib

    import pandas as pd
    import pyarrow.parquet as pq

    where = Path(info["dir"])
    snap = local_snapshot(info)
    df = pd.read_parquet(where / "training.parquet")
    # The baseline's list: the allowed people's plain SHA-256, as a pipeline that
    # pseudonymises on its own would keep it.
    allowed_plain = pq.read_table(where / "allowed_ids.parquet")["user_id"].to_pylist()
    pq.write_table(
        pq.read_table(where / "allowed_ids.parquet").append_column(
            "sha256", [[hashlib.sha256(v.encode()).digest() for v in allowed_plain]]
        ),
        where / "allowed_sha256.parquet",
    )

    def ours() -> Any:
        snap._verdicts = None  # each run reads the file, as a pipeline's first filter does
        return snap.filter_pandas(df, "user_id")

    def hashed() -> Any:
        allowed = set(pq.read_table(where / "allowed_sha256.parquet")["sha256"].to_pylist())
        distinct = [str(v) for v in pd.unique(df["user_id"].dropna())]
        keep = [v for v in distinct if hashlib.sha256(v.encode("utf-8")).digest() in allowed]
        values = df["user_id"]
        return df[values.notna() & values.astype(str).isin(keep)]

    def plain() -> Any:
        allowed = pq.read_table(where / "allowed_ids.parquet")["user_id"].to_pylist()
        return df[df["user_id"].isin(allowed)]

    ours_s, hashed_s, results = paired(ours, hashed, runs)
    assert len(results[-1]) == len(hashed()) == len(plain())
    plain_times = []
    for _ in range(runs):
        started = time.perf_counter()
        plain()
        plain_times.append(time.perf_counter() - started)
    plain_s = statistics.median(plain_times)
    ratio = ours_s / hashed_s
    print(
        f"pandas: filter_pandas {ours_s:.2f} s, SHA-256 join {hashed_s:.2f} s, "
        f"plain join {plain_s:.2f} s (rows kept {len(results[-1]):,})"
    )
    print(f"  ratio to the SHA-256 join {verdict(ratio, 1.5)}", flush=True)
    return {
        "pandas_ours": ours_s,
        "pandas_hashed": hashed_s,
        "pandas_plain": plain_s,
        "pandas_ratio": ratio,
    }


# --- the build --------------------------------------------------------------------------------


def django_setup() -> None:
    import django

    django.setup()


def seed(subjects: int) -> None:
    """`subjects` people with encrypted identifiers, one consent event each and the state
    it leaves (see allowed_of), by COPY and INSERT ... SELECT."""
    import psycopg
    from django.core.management import call_command

    from consent import identity, services
    from consent.checks.inputs import SubjectHasher
    from consent.models import ConsentEvent, Purpose, Subject

    call_command("migrate", verbosity=0)
    if not Purpose.objects.filter(key=PURPOSE).exists():
        services.purpose_create(key=PURPOSE, name="ML training", legal_basis="consent")
    purpose = Purpose.objects.get(key=PURPOSE)
    fresh = os.environ.get("BENCH_RESEED") == "1"
    if not fresh and Subject.objects.count() == subjects and ConsentEvent.objects.exists():
        return
    started = time.perf_counter()
    hasher = SubjectHasher()
    with psycopg.connect(BENCH_DB) as conn:
        conn.execute(
            "TRUNCATE consent_consentstate, consent_decisionlineage, consent_decision, "
            "consent_consentevent, consent_subject RESTART IDENTITY CASCADE"
        )
        with conn.cursor().copy(
            "COPY consent_subject (namespace, key, key_version, identifier_encrypted, "
            "created_at, last_seq, chain_head) FROM STDIN"
        ) as copy:
            for i in range(subjects):
                key = hasher(ident(i))
                blob = identity.encrypt_identifier(ident(i), key=key)
                copy.write_row(("account", key, 1, blob, "2026-01-01 00:00:00+00", 1, ""))
        # Subject ids start at 1 (RESTART IDENTITY): subject id - 1 is i of allowed_of.
        status = """CASE WHEN (id - 1) %% 10 < 6 THEN 'granted'
                         WHEN (id - 1) %% 10 < 8 THEN 'refused' ELSE 'withdrawn' END"""
        expires = """CASE WHEN (id - 1) %% 10 >= 6 THEN NULL
                          WHEN (id - 1) %% 20 = 0 THEN now() - interval '1 day'
                          ELSE now() + interval '300 days' END"""
        conn.execute(
            f"""
            INSERT INTO consent_consentevent
                (id, subject_id, seq, purpose_id, notice_version, language, action,
                 effective_at, recorded_at, expires_at, source, indication_method, given_by,
                 actor_type, actor_id, actor_label, receipt_id, context_digest, prev_hash, hash)
            SELECT gen_random_uuid(), id, 1, %s, 1, 'en', {status},
                   now() - interval '30 days', now() - interval '30 days', {expires},
                   'api', 'api', 'subject', 'api_client', '', '', gen_random_uuid(), '', '',
                   md5(id::text)
            FROM consent_subject WHERE (id - 1) %% 10 <> 9
            """,
            (purpose.pk,),
        )
        conn.execute(
            """
            INSERT INTO consent_consentstate
                (subject_id, purpose_id, status, notice_version, since, expires_at,
                 event_id, gpc, updated_at)
            SELECT subject_id, purpose_id, action, notice_version, effective_at, expires_at,
                   id, false, now()
            FROM consent_consentevent
            """
        )
        for table in ("consent_subject", "consent_consentevent", "consent_consentstate"):
            conn.execute(f"ANALYZE {table}")
    print(f"seeded {subjects:,} subjects in {time.perf_counter() - started:.1f} s", flush=True)


def child_ours() -> dict[str, Any]:
    """One snapshot built start to finish in this process; its time, counts, peak RSS."""
    from consent.models import Snapshot
    from consent.snapshots import files
    from consent.snapshots.services import snapshot_build, snapshot_create, snapshot_delete
    from governance.actors import Actor
    from governance.celery import app

    app.backend  # noqa: B018 - loaded before the clock starts: a worker has it loaded already
    actor = Actor.system("bench")
    started = time.perf_counter()
    snapshot = snapshot_create(actor=actor, purpose_key=PURPOSE)
    outcome = snapshot_build(snapshot_id=snapshot.id)
    seconds = time.perf_counter() - started
    snapshot.refresh_from_db()
    assert outcome == "ready" and snapshot.status == Snapshot.Status.READY, outcome
    size = files.public_path(snapshot.id).stat().st_size
    snapshot_delete(snapshot=snapshot, actor=actor)
    return {
        "seconds": seconds,
        "allowed": snapshot.allowed_count,
        "denied": snapshot.denied_count,
        "bytes": size,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_raw() -> dict[str, Any]:
    """The raw baseline: COPY out states and encrypted ids, decrypt, decide, HMAC, write."""
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq
    from consent_client.snapshot import Hmac
    from django.utils import timezone

    from consent import identity
    from consent.models import Purpose

    purpose_id = Purpose.objects.get(key=PURPOSE).pk
    now = timezone.now()
    started = time.perf_counter()
    identifiers: list[str] = []
    allowed: list[bool] = []
    reasons: list[str] = []
    with psycopg.connect(BENCH_DB) as conn, conn.cursor() as cur:
        sql = f"""COPY (SELECT s.key, s.identifier_encrypted, c.status, c.expires_at
                        FROM consent_subject s LEFT JOIN consent_consentstate c
                        ON c.subject_id = s.id AND c.purpose_id = {int(purpose_id)}
                        WHERE s.namespace = 'account' AND s.identifier_encrypted IS NOT NULL)
                  TO STDOUT (FORMAT BINARY)"""
        with cur.copy(sql) as copy:
            copy.set_types(["text", "bytea", "text", "timestamptz"])
            for key, blob, status, expires in copy.rows():
                identifiers.append(identity.decrypt_identifier(blob, key=key) or "")
                ok = status == "granted" and (expires is None or expires > now)
                allowed.append(ok)
                reasons.append("granted" if ok else status or "no_consent")
    table = pa.table(
        {
            "pseudonym": pa.array(Hmac(os.urandom(32)).many(identifiers), pa.binary(32)),
            "allowed": pa.array(allowed, pa.bool_()),
            "reason": pa.array(reasons, pa.string()),
        }
    )
    path = DATA_DIR / "raw-snapshot.parquet"
    pq.write_table(table, path)
    seconds = time.perf_counter() - started
    path.unlink()
    return {
        "seconds": seconds,
        "allowed": sum(allowed),
        "denied": len(allowed) - sum(allowed),
        "peak_rss_mib": peak_rss_mib(),
    }


def child(kind: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_build(subjects: int, runs: int) -> dict[str, float]:
    ensure_database(BENCH_DB)
    django_setup()
    seed(subjects)
    ours_runs, raw_runs = [], []
    for _ in range(runs):
        ours_runs.append(child("ours"))
        raw_runs.append(child("raw"))
    ours, raw = ours_runs[-1], raw_runs[-1]
    assert (ours["allowed"], ours["denied"]) == (raw["allowed"], raw["denied"]), (ours, raw)
    print(
        f"  runs: ours {fmt([r['seconds'] for r in ours_runs])}, "
        f"raw {fmt([r['seconds'] for r in raw_runs])}"
    )
    ours_s = statistics.median(r["seconds"] for r in ours_runs)
    raw_s = statistics.median(r["seconds"] for r in raw_runs)
    ratio = ours_s / raw_s
    ours_rss = max(r["peak_rss_mib"] for r in ours_runs)
    raw_rss = max(r["peak_rss_mib"] for r in raw_runs)
    print(
        f"build {subjects:,} subjects: snapshot {ours_s:.2f} s (peak RSS {ours_rss:.0f} MiB, "
        f"file {ours['bytes'] / 2**20:.1f} MiB), raw {raw_s:.2f} s (peak RSS {raw_rss:.0f} MiB)"
    )
    print(f"  allowed {ours['allowed']:,}, denied {ours['denied']:,}; ratio {verdict(ratio, 2)}")
    return {
        "build_ours": ours_s,
        "build_raw": raw_s,
        "build_ratio": ratio,
        "build_ours_rss": ours_rss,
        "build_raw_rss": raw_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="spark,pandas,build")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        django_setup()
        result = child_ours() if args.child == "ours" else child_raw()
        print(json.dumps(result))
        return
    parts = args.only.split(",")
    print(
        f"lakehouse bench: {args.rows:,} rows, {args.subjects:,} subjects, {args.runs} runs; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    figures: dict[str, float] = {}
    if "spark" in parts or "pandas" in parts:
        info = files(args.rows, args.subjects)
        if "spark" in parts:
            figures |= bench_spark(info, args.runs)
        if "pandas" in parts:
            figures |= bench_pandas(info, args.runs)
    if "build" in parts:
        figures |= bench_build(args.subjects, args.runs)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
