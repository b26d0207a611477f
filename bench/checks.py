"""Benchmark of the check hot paths, each beside a raw-SQL baseline measured in the same run.

    uv run python bench/checks.py            # seeds gov_bench_checks once (1,000,000 subjects)

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/gov_bench_checks),
BENCH_SUBJECTS (1000000), BENCH_BULK_IDS (100000), BENCH_STREAM_IDS (1000000),
BENCH_RATE (500 requests/s), BENCH_DURATION (20 s per wrk run), BENCH_WORKERS (2) and
BENCH_THREADS (1) for both gunicorns, BENCH_RESEED=1 to reseed. Bulk and stream figures are
medians of runs that alternate with the raw baseline's, so both meet the same machine load.
Needs PostgreSQL and `wrk` (apt-get install -y wrk) for the single-check figures.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database  # noqa: E402

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gov_bench_checks"
)
os.environ.update(
    {
        "DATABASE_URL": BENCH_DB,
        "BENCH_DATABASE_URL": BENCH_DB,
        "DJANGO_SETTINGS_MODULE": "governance.settings",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }
)
os.environ.setdefault(
    "SECRET_KEY", "bench-secret-key-long-enough-for-the-production-minimum-0123456789"
)
os.environ.setdefault("SUBJECT_HASH_KEY", "bench-subject-hash-key-0123456789abcdef")
# The bench speaks plain http to gunicorn on loopback.
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SUBJECT_ENCRYPTION_KEY", "YmVuY2gtc3ViamVjdC1lbmNyeXB0aW9uLWtleS0zMmI=")
os.environ.setdefault("VAR_DIR", tempfile.gettempdir() + "/bench-checks-var")
os.environ.pop("REDIS_URL", None)  # in-process cache; the check paths do not use it
# wrk sends every banner request from one address: the per-address banner limit is still
# counted on each (its cost is in the figure) but set beyond what the run sends.
os.environ.setdefault("BANNER_RATE_LIMIT_PER_MINUTE", str(10**9))

import psycopg  # noqa: E402
import requests  # noqa: E402

N_SUBJECTS = int(os.environ.get("BENCH_SUBJECTS", "1000000"))
N_BULK = int(os.environ.get("BENCH_BULK_IDS", "100000"))
N_STREAM = int(os.environ.get("BENCH_STREAM_IDS", str(N_SUBJECTS)))
RATE = int(os.environ.get("BENCH_RATE", "500"))
DURATION = int(os.environ.get("BENCH_DURATION", "20"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
PURPOSE = "ml_training"


def ident(i: int) -> str:
    return f"bench-{i:07d}"


def django_setup() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed() -> str:
    """1,000,000 subjects with states, by COPY; returns an API key with scope `checks`."""
    from consent import services
    from consent.checks.inputs import SubjectHasher
    from consent.models import ConsentState, Purpose, Subject
    from governance import services as governance_services
    from governance.models import ApiClient

    if not Purpose.objects.filter(key=PURPOSE).exists():
        services.purpose_create(key=PURPOSE, name="ML training", legal_basis="consent")
    purpose = Purpose.objects.get(key=PURPOSE)
    fresh = os.environ.get("BENCH_RESEED") == "1"
    if fresh or Subject.objects.count() != N_SUBJECTS or not ConsentState.objects.exists():
        started = time.perf_counter()
        hasher = SubjectHasher()
        with psycopg.connect(BENCH_DB) as conn:
            conn.execute(
                "TRUNCATE consent_consentstate, consent_decisionlineage, consent_decision, "
                "consent_subject RESTART IDENTITY CASCADE"
            )
            with conn.cursor().copy(
                "COPY consent_subject (namespace, key, key_version, created_at, last_seq, "
                "chain_head) FROM STDIN"
            ) as copy:
                for start in range(0, N_SUBJECTS, 100_000):
                    rows = [
                        f"account\t{hasher(ident(i))}\t1\t2026-01-01 00:00:00+00\t1\t\n"
                        for i in range(start, min(start + 100_000, N_SUBJECTS))
                    ]
                    copy.write("".join(rows))
            # 60% granted (1 in 20 of them expired), 20% refused, 10% withdrawn, 10% nothing.
            conn.execute(
                """
                INSERT INTO consent_consentstate
                    (subject_id, purpose_id, status, notice_version, since, expires_at,
                     event_id, gpc, updated_at)
                SELECT id, %s,
                       CASE WHEN id %% 10 < 6 THEN 'granted'
                            WHEN id %% 10 < 8 THEN 'refused' ELSE 'withdrawn' END,
                       1, now() - interval '30 days',
                       CASE WHEN id %% 10 >= 6 THEN NULL
                            WHEN id %% 20 = 0 THEN now() - interval '1 day'
                            ELSE now() + interval '300 days' END,
                       gen_random_uuid(), false, now()
                FROM consent_subject WHERE id %% 10 <> 9
                """,
                (purpose.pk,),
            )
            conn.execute("ANALYZE consent_subject")
            conn.execute("ANALYZE consent_consentstate")
        print(f"seeded {N_SUBJECTS:,} subjects in {time.perf_counter() - started:.1f} s")
    ApiClient.objects.filter(name="bench").delete()
    _, key = governance_services.api_client_create(name="bench", scopes=["checks", "consent:read"])
    return key


def banner_property() -> str:
    """A property showing the bench purpose on BANNER_ORIGIN; returns its publishable key."""
    from consent.banner import services as banner_services
    from consent.models import Property, Purpose
    from governance.actors import Actor
    from governance.models import ApiClient

    for prop in Property.objects.filter(name="bench-shop"):
        client_id = prop.api_client_id
        prop.delete()
        ApiClient.objects.filter(pk=client_id or 0).delete()
    _, publishable = banner_services.property_create(
        name="bench-shop",
        allowed_origins=[BANNER_ORIGIN],
        purposes=[Purpose.objects.get(key=PURPOSE)],
        actor=Actor.system("bench"),
        texts={"en": {"title": "Your choices", "description": "We ask first."}},
    )
    assert publishable
    return publishable


# --- the raw SQL baseline ---------------------------------------------------------------------


def raw_sql_lookup(conn: psycopg.Connection[Any], ids: list[str]) -> tuple[float, float, int]:
    """Hash the ids, COPY them into a temporary table, join, fetch: (total s, SQL s, rows)."""
    from consent.checks.inputs import SubjectHasher

    started = time.perf_counter()
    hasher = SubjectHasher()
    keys = [hasher(i) for i in ids]
    sql_started = time.perf_counter()
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE ids (pos int, key text) ON COMMIT DROP")
        with cur.copy("COPY ids (pos, key) FROM STDIN") as copy:
            copy.write("".join(f"{n}\t{k}\n" for n, k in enumerate(keys)))
        cur.execute("ANALYZE ids")
        cur.execute(
            """
            SELECT ids.pos, cs.status, cs.expires_at, cs.event_id
            FROM ids JOIN consent_subject s ON s.namespace = 'account' AND s.key = ids.key
            LEFT JOIN consent_consentstate cs ON cs.subject_id = s.id AND cs.purpose_id =
                (SELECT id FROM consent_purpose WHERE key = %s)
            """,
            (PURPOSE,),
        )
        rows = cur.fetchall()
    done = time.perf_counter()
    return done - started, done - sql_started, len(rows)


# --- servers and load ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(
    app: str, *, workers: int = WORKERS, threads: int = THREADS
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            app,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "600",
            "--chdir",
            str(ROOT),
            "--pythonpath",
            f"{ROOT},{ROOT / 'bench'}",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def worker_peak_rss_mb(master: subprocess.Popen[bytes]) -> float:
    """The largest peak resident set (VmHWM) among gunicorn's workers, in MiB."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"PPid:\t{master.pid}\n" in text:
            match = re.search(r"VmHWM:\s+(\d+) kB", text)
            if match:
                peak = max(peak, int(match.group(1)))
    return peak / 1024


def paired(
    ours: Callable[[], Any], raw: Callable[[], tuple[float, float, int]], runs: int
) -> tuple[float, tuple[float, float]]:
    """Runs ours and the raw baseline alternately, so that both see the same load on a
    shared machine, and returns the median of each: (ours s, (raw total s, raw SQL s))."""
    times, raw_totals, raw_sql = [], [], []
    for _ in range(runs):
        total, sql, _ = raw()
        raw_totals.append(total)
        raw_sql.append(sql)
        started = time.perf_counter()
        ours()
        times.append(time.perf_counter() - started)
    median = statistics.median
    return median(times), (median(raw_totals), median(raw_sql))


BANNER_ORIGIN = "https://shop.bench.example"
# Paths wrk asks for: `%s` is the prefix, `%07d` a random subject (where the path names one).
SINGLE_CHECK = "%s/subjects/bench-%07d/checks/ml_training"
CONSENTS_READ = "%s/subjects/bench-%07d/consents"
BANNER_CONFIG = "%s/banner/config"

WRK_SCRIPT = """
local n = tonumber(os.getenv("BENCH_N"))
local key = os.getenv("BENCH_KEY")
local prefix = os.getenv("BENCH_PREFIX")
local template = os.getenv("BENCH_PATH")
local origin = os.getenv("BENCH_ORIGIN")
local gap = tonumber(os.getenv("BENCH_GAP_MS"))
local headers = {["Authorization"] = "Bearer " .. key}
if origin ~= "" then headers["Origin"] = origin end
math.randomseed(os.time())
request = function()
  local i = math.random(0, n - 1)
  local path = string.format(template, prefix, i)
  return wrk.format("GET", path, headers)
end
delay = function() if gap > 0 then return gap end return 0 end
"""


def wrk_single(base: str, prefix: str, key: str) -> dict[str, float]:
    """p50/p99 (ms) and the rate reached, paced at about RATE requests/s."""
    connections = 20
    # Each connection waits `gap` ms between answers; a few ms of latency lowers the rate a
    # little, so the gap is set for ~2 ms of expected latency.
    return wrk_run(
        base, prefix, key, SINGLE_CHECK, connections, max(1, int(connections * 1000 / RATE) - 2)
    )


def wrk_max_rate(base: str, template: str, key: str, origin: str = "") -> float:
    """The most requests/s the server answers for `template` from 8 unpaced connections."""
    result = wrk_run(base, "/api/v1", key, template, 8, 0, origin=origin)
    assert result["errors"] == 0, f"{template}: {result['errors']:.0f} non-2xx answers"
    return result["rate"]


def wrk_run(
    base: str, prefix: str, key: str, template: str, connections: int, gap: int, origin: str = ""
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {
        **os.environ,
        "BENCH_N": str(N_SUBJECTS),
        "BENCH_KEY": key,
        "BENCH_PREFIX": prefix,
        "BENCH_PATH": template,
        "BENCH_ORIGIN": origin,
        "BENCH_GAP_MS": str(gap),
    }
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{DURATION}s", "--latency", "-s", script.name, base],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50": ms("50"),
        "p99": ms("99"),
        "rate": float(rate.group(1)) if rate else 0.0,
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    ensure_database(BENCH_DB)
    django_setup()
    key = seed()
    publishable = banner_property()
    rng = random.Random(42)
    bulk_ids = [ident(i) for i in rng.sample(range(N_SUBJECTS), N_BULK)]
    stream_ids = [ident(i) for i in rng.sample(range(N_SUBJECTS), N_STREAM)]
    stream_body = "".join(f'{{"subject_id": "{i}"}}\n' for i in stream_ids).encode()
    auth = {"Authorization": f"Bearer {key}"}

    with (
        psycopg.connect(BENCH_DB) as conn,
        gunicorn("governance.wsgi:application") as (base, master),
    ):
        raw_sql_lookup(conn, bulk_ids[:1000])  # warm the connection and caches
        url = f"{base}/api/v1/checks"

        # Encoded once, as the stream's body is: the client's JSON encoding is not the server's.
        bulk_body = json.dumps({"purpose": PURPOSE, "subject_ids": bulk_ids}).encode()

        def post_bulk() -> None:
            response = requests.post(
                url,
                data=bulk_body,
                headers={**auth, "Content-Type": "application/json"},
                timeout=600,
            )
            assert response.status_code == 200, response.text[:300]

        post_bulk()  # warm both workers' imports and connections
        post_bulk()
        bulk, raw_bulk = paired(post_bulk, lambda: raw_sql_lookup(conn, bulk_ids), runs=5)

        def post_stream() -> None:
            response = requests.post(
                f"{base}/api/v1/checks/stream?purpose={PURPOSE}",
                data=stream_body,
                headers={**auth, "Content-Type": "application/x-ndjson"},
                timeout=1200,
            )
            assert response.status_code == 200, response.text[:300]
            assert response.text.count("\n") == N_STREAM + 1

        stream, raw_stream = paired(post_stream, lambda: raw_sql_lookup(conn, stream_ids), runs=3)
        rss = worker_peak_rss_mb(master)

        single = wrk_single(base, "/api/v1", key) if shutil.which("wrk") else None
        rates = None
        if shutil.which("wrk"):
            # The reads people's pages make most, beside the single check's most, same run.
            rates = {
                "single": wrk_max_rate(base, SINGLE_CHECK, key),
                "consents": wrk_max_rate(base, CONSENTS_READ, key),
                "banner": wrk_max_rate(base, BANNER_CONFIG, publishable, origin=BANNER_ORIGIN),
            }
    bare = None
    if shutil.which("wrk"):
        with gunicorn("bare_wsgi:application") as (bare_base, _):
            bare = wrk_single(bare_base, "", key)

    print()
    print(f"checks bench: {N_SUBJECTS:,} subjects, purpose {PURPOSE}, 2 gunicorn workers")
    print(f"{'figure':<44}{'ours':>12}{'baseline':>12}{'ratio':>8}")

    def row(label: str, ours: float, base_value: float, unit: str) -> None:
        ratio = ours / base_value if base_value else float("nan")
        print(f"{label:<44}{ours:>10.3f}{unit:<2}{base_value:>10.3f}{unit:<2}{ratio:>7.2f}x")

    row(f"POST /checks, {N_BULK:,} ids (s)", bulk, raw_bulk[0], " s")
    row("  same, vs SQL part only (COPY+join) (s)", bulk, raw_bulk[1], " s")
    row(f"POST /checks/stream, {N_STREAM:,} ids (s)", stream, raw_stream[0], " s")
    row("  same, vs SQL part only (COPY+join) (s)", stream, raw_stream[1], " s")
    print(f"{'  peak worker RSS after the stream (MiB)':<44}{rss:>10.1f}")
    if single and bare:
        row(f"single check p50 at ~{RATE}/s (ms)", single["p50"], bare["p50"], "ms")
        row(f"single check p99 at ~{RATE}/s (ms)", single["p99"], bare["p99"], "ms")
        print(
            f"{'  rate reached, ours / bare (req/s)':<44}{single['rate']:>10.0f}  "
            f"{bare['rate']:>10.0f}  (non-2xx: {single['errors']:.0f} / {bare['errors']:.0f})"
        )
    else:
        print("single check: wrk not found (apt-get install -y wrk)")
    if rates:
        print(f"{'most req/s from 8 connections':<44}{'ours':>12}{'single':>12}{'ratio':>8}")
        for label, name in (
            ("GET /subjects/{id}/consents", "consents"),
            ("GET /banner/config", "banner"),
        ):
            ratio = rates[name] / rates["single"]
            print(f"{label:<44}{rates[name]:>10.0f}  {rates['single']:>10.0f}  {ratio:>7.2f}x")


if __name__ == "__main__":
    main()
