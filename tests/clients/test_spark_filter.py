"""The client's Spark filter on a real local Spark: its pseudonyms are Python's HMAC, it
keeps exactly the rows filter_pandas keeps, honours default_allowed, and the key appears in
no config, plan string or event-log line."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from consent_client import Snapshot
from consent_client.snapshot import pads
from consent_client.spark import JAR, JVM_FUNCTION, PSEUDONYM, jvm_registered, with_pseudonyms

from tests.secret_forms import secret_forms

IDS = [
    "ann",
    "bob",
    "O'Brien",
    'say "hi"',
    "x' OR '1'='1",
    "é'\" x",
    "Zoë Ørsted",
    "名前",
    "emoji 😀",
    "back\\slash",
    "",
    "a" * 300,
]


def _hmac(key: bytes, value: str) -> bytes:
    return hmac.new(key, value.encode("utf-8"), "sha256").digest()


def _snapshot(tmp_path: Path, verdicts: dict[str, bool], *, default_allowed: bool) -> Snapshot:
    """A snapshot as the client holds it once verified: its file and key, made here."""
    key = os.urandom(32)
    path = tmp_path / f"snapshot-{key.hex()[:8]}.parquet"
    pq.write_table(
        pa.table(
            {
                "pseudonym": pa.array([_hmac(key, v) for v in verdicts], pa.binary(32)),
                "allowed": pa.array(list(verdicts.values()), pa.bool_()),
                "reason": pa.array(["granted" if a else "withdrawn" for a in verdicts.values()]),
            }
        ),
        path,
    )
    info = {
        "id": "local",
        "purpose": "ml_training",
        "as_of": "2026-12-07T00:00:00Z",
        "key": "identifier",
        "default_allowed": default_allowed,
        "counts": {
            "allowed": sum(verdicts.values()),
            "denied": sum(not a for a in verdicts.values()),
        },
    }
    return Snapshot(client=None, info=info, path=str(path), _key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize("jvm", [True, False], ids=["jvm-function", "spark-builtins"])
def test_spark_pseudonyms_equal_python_hmac_on_quotes_and_non_ascii(spark, jvm):
    key = os.urandom(32)
    df = spark.createDataFrame([(v,) for v in IDS], "user_id string")
    rows = with_pseudonyms(df, "user_id", key, "identifier", "p", jvm=jvm).collect()
    assert {r.user_id: bytes(r.p) for r in rows} == {v: _hmac(key, v) for v in IDS}


def test_the_jvm_function_is_built_and_used_by_default(spark):
    """`make install` compiles it (javac is on every machine the suite runs on), and the
    filter picks it without being asked: a second key in the same session re-keys it."""
    assert JAR.exists(), "make install builds the JVM HMAC"
    assert jvm_registered(spark)
    df = spark.createDataFrame([(v,) for v in IDS], "user_id string")
    for key in (os.urandom(32), os.urandom(32), os.urandom(80)):
        named = with_pseudonyms(df, "user_id", key, "identifier", "p")
        assert JVM_FUNCTION in named._jdf.queryExecution().analyzed().toString()
        assert {r.user_id: bytes(r.p) for r in named.collect()} == {v: _hmac(key, v) for v in IDS}


def test_subject_key_pseudonyms_hash_the_lowercase_hex_of_text_or_binary_keys(spark):
    key = os.urandom(32)
    subject_keys = [os.urandom(32) for _ in range(5)]
    df = spark.createDataFrame(
        [(k.hex(), bytearray(k)) for k in subject_keys], "as_text string, as_bytes binary"
    )
    text = with_pseudonyms(df, "as_text", key, "subject_key", "p").collect()
    raw = with_pseudonyms(df, "as_bytes", key, "subject_key", "p").collect()
    expected = [_hmac(key, k.hex()) for k in subject_keys]
    assert sorted(bytes(r.p) for r in text) == sorted(expected)
    assert sorted(bytes(r.p) for r in raw) == sorted(expected)
    with pytest.raises(TypeError):
        with_pseudonyms(df, "as_bytes", key, "identifier")


def test_integer_ids_are_hashed_as_their_decimal_text(spark):
    key = os.urandom(32)
    df = spark.createDataFrame([(7,), (-12,), (10**15,)], "user_id long")
    rows = with_pseudonyms(df, "user_id", key, "identifier", "p").collect()
    assert {r.user_id: bytes(r.p) for r in rows} == {
        v: _hmac(key, str(v)) for v in (7, -12, 10**15)
    }


def _training_rows() -> pd.DataFrame:
    # Listed and allowed, listed and denied, never listed, missing, repeated.
    users = [*IDS, "denied-1", "denied-2", "stranger", None, "ann", "denied-1", "名前"]
    return pd.DataFrame({"user_id": users, "x": range(len(users))})


@pytest.mark.parametrize("broadcast", [None, False], ids=["filter-function", "join"])
@pytest.mark.parametrize("default_allowed", [False, True])
def test_filter_spark_keeps_the_rows_filter_pandas_keeps(
    spark, tmp_path, default_allowed, broadcast
):
    verdicts = {**{v: True for v in IDS}, "denied-1": False, "denied-2": False}
    snap = _snapshot(tmp_path, verdicts, default_allowed=default_allowed)
    rows = _training_rows()
    df = spark.createDataFrame(rows.astype(object).where(rows.notna(), None))

    kept = snap.filter_spark(df, "user_id", broadcast=broadcast)
    plan = kept._jdf.queryExecution().optimizedPlan().toString()
    # By default the JVM filter function, no join; a shuffled join when asked.
    assert ("Join" in plan) is (broadcast is False)
    assert ("consent_snapshot_filter_" in plan) is (broadcast is None)
    assert kept.columns == ["user_id", "x"]
    by_spark = sorted((r.x, r.user_id) for r in kept.collect())
    by_pandas = sorted(zip(*snap.filter_pandas(rows, "user_id").T.values[::-1], strict=True))
    assert by_spark == by_pandas
    kept_users = {u for _, u in by_spark}
    # Absent ids follow default_allowed; denied ones and missing ones never pass.
    assert ("stranger" in kept_users) is default_allowed
    assert not kept_users & {"denied-1", "denied-2", None}
    assert set(IDS) <= kept_users


def _event_log_text(directory: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in directory.rglob("*") if p.is_file()]


def test_the_key_reaches_no_config_plan_or_event_log(spark, spark_event_log, tmp_path):
    from pyspark.sql import functions as F

    verdicts = {"ann": True, "bob": False}
    snap = _snapshot(tmp_path, verdicts, default_allowed=False)
    ipad, opad = pads(snap._key)
    df = spark.createDataFrame([("ann", 1), ("bob", 2), ("cy", 3)], "user_id string, x long")

    kept = snap.filter_spark(df, "user_id")
    assert [r.user_id for r in kept.collect()] == ["ann"]
    usage = with_pseudonyms(df, "user_id", snap._key, "identifier").select(PSEUDONYM)
    assert usage.distinct().count() == 3
    # The control: a secret written as a literal does reach the event log, so the search
    # below would find the key had it been one.
    canary = os.urandom(32)
    assert df.select(F.lit(canary).alias("c")).distinct().count() == 1
    plans = kept._jdf.queryExecution().toString()
    # Everything Spark has logged so far reaches the files before they are read.
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()

    texts: list[tuple[Any, bytes]] = _event_log_text(spark_event_log)
    assert any(canary.hex().upper().encode() in text for _, text in texts)
    conf = "\n".join(f"{k}={v}" for k, v in spark.sparkContext.getConf().getAll())
    conf += "\n".join(f"{k}={v}" for k, v in spark.conf.getAll.items())
    texts += [("conf", conf.encode()), ("plans", plans.encode())]
    for secret in (snap._key, ipad, opad):
        for form in secret_forms(secret):
            leaks = [name for name, text in texts if form in text]
            assert not leaks, f"{form[:12]!r}... found in {leaks}"


@pytest.mark.parametrize("default_allowed", [False, True])
def test_skew_of_a_spark_frame_is_counted_in_the_engine_and_equals_pandas(
    spark, tmp_path, default_allowed
):
    verdicts = {f"u{i}": i % 3 != 0 for i in range(60)}
    snap = _snapshot(tmp_path, verdicts, default_allowed=default_allowed)
    users = [f"u{i}" for i in range(60)] + [f"stranger{i}" for i in range(15)] + [None] * 4
    rows = pd.DataFrame(
        {
            "user_id": users,
            "region": [["north", "south", None][i % 3] for i in range(len(users))],
            "band": [i % 4 for i in range(len(users))],
        }
    )
    df = spark.createDataFrame(rows.astype(object).where(rows.notna(), None))
    by_spark = snap.skew(df, "user_id", by=["region", "band"])
    assert by_spark == snap.skew(rows, "user_id", by=["region", "band"])
    assert {r["value"] for r in by_spark["by"]["band"]} >= {"0", "1", "2", "3"}
    no_names = snap.skew(df, "user_id", by=[])
    assert no_names == snap.skew(rows, "user_id", by=[])


def test_the_jar_builds_without_pyspark_and_carries_no_stub(tmp_path):
    """java/build_jar.py (make install, the wheel's hook) compiles against a stand-in of
    Spark's UDF3 and packs only the client's classes: Spark's own interface is loaded."""
    import importlib.util
    import zipfile

    script = Path(__file__).resolve().parents[2] / "clients/python/java/build_jar.py"
    spec = importlib.util.spec_from_file_location("build_jar", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = tmp_path / "consent-spark.jar"
    assert module.build(target)
    names = zipfile.ZipFile(target).namelist()
    assert "org/consentgovernance/spark/HmacSha256.class" in names
    assert not [n for n in names if n.startswith("org/apache/")]


def test_the_filter_function_is_built_once_per_snapshot_and_released_on_close(spark, tmp_path):
    snap = _snapshot(tmp_path, {"ann": True, "bob": False}, default_allowed=False)
    df = spark.createDataFrame([("ann", 1), ("bob", 2), ("cy", 3)], "user_id string, x long")
    first = snap.filter_spark(df, "user_id")
    second = snap.filter_spark(df.where("x > 0"), "user_id")
    assert [r.user_id for r in first.collect()] == [r.user_id for r in second.collect()] == ["ann"]
    assert len(snap._spark_filters) == 1
    (filter_function,) = [function for _, function in snap._spark_filters.values()]
    snap.close()
    assert snap._spark_filters == {}
    with pytest.raises(Exception, match="destroy"):
        filter_function.destroy()  # destroyed already: its data gone from driver and executors
    assert not list(tmp_path.glob("*.pseudonyms"))  # the hand-over file went at once
