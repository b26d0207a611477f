"""Snapshots in Spark (extra `[spark]`): pseudonyms computed by the engine itself, then
compared with the snapshot's deciding pseudonyms.

The filter has two implementations of one interface (the rows of `df` the snapshot
allows): where the client's JVM classes load, a filter function (`SnapshotFilter`) that
hashes each id and looks the pseudonym up in the deciding pseudonyms, broadcast once to
every executor as one byte array, so no join runs at all; elsewhere (no jar, Spark
Connect, or `broadcast=False`) a join of the pseudonymised rows with the verdicts.

The HMAC, `H((K ^ opad) || H((K ^ ipad) || m))`, has two implementations of one signature
(the two padded key blocks and the message in, 32 bytes out), and no Python UDF runs in
either, so the same code runs on a cluster:

- a JVM function (`consent_hmac_sha256`, clients/python/java/), used when its class loads:
  already on the session's classpath (`spark.jars`, as a cluster ships it) or the client's
  own jar added to the session here. It keeps per-thread SHA-256 states that have absorbed
  the key blocks, about three times cheaper a row than
- Spark's own functions, `sha2`, `unhex` and `concat`: `sha2` builds a `MessageDigest` per
  call and hexes each digest into a string that `unhex` must read back.

The two padded key blocks are as secret as the key (either gives it back by a XOR), so they
must not appear where Spark writes query text. A literal would: binary literals are printed
in hex in every plan string, and the event log's `sparkPlanInfo` keeps them even when
`spark.sql.redaction.string.regex` redacts the plan description. So the blocks are the one
row of an in-memory relation created in the JVM through the Py4J gateway, read by two
scalar subqueries: Spark evaluates those once on the driver and ships the value inside the
tasks, and plans show only `Subquery subquery#N` over `LocalTableScan [column]`. (PySpark's
`createDataFrame` would first spool the row to a temporary file on the driver's disk; on
Spark Connect, which has no gateway, it is used all the same, since there the rows travel
inside the plan message.) A cross join with that row would do too, but costs a nested-loop
join per row.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consent_client.snapshot import pads

if TYPE_CHECKING:
    from consent_client.snapshot import Snapshot

JAR = Path(__file__).resolve().parent / "jars" / "consent-spark.jar"
JVM_CLASS = "org.consentgovernance.spark.HmacSha256"
JVM_FUNCTION = "consent_hmac_sha256"
JVM_FILTER_CLASS = "org.consentgovernance.spark.SnapshotFilter"
IPAD = "__consent_ipad"
OPAD = "__consent_opad"
PSEUDONYM = "__consent_pseudonym"
HEAD = "__consent_head"
LISTED = "__consent_listed"
LISTED_HEAD = "__consent_listed_head"
VERDICT = "__consent_allowed"
REASON = "__consent_reason"
# Up to this many deciding pseudonyms (32 bytes each) are broadcast to every executor, so
# the training table is joined where it lies instead of being shuffled. Spark would not
# choose it itself above `spark.sql.autoBroadcastJoinThreshold` (10 MB, 300,000 of them).
BROADCAST_MAX = 4_000_000


def _key_frame(spark: Any, key: bytes) -> Any:
    """A one-row DataFrame holding the two padded key blocks, never a literal."""
    from pyspark.sql import DataFrame
    from pyspark.sql.types import BinaryType, StructField, StructType

    ipad, opad = pads(key)
    schema = StructType(
        [StructField(IPAD, BinaryType(), False), StructField(OPAD, BinaryType(), False)]
    )
    jsession = getattr(spark, "_jsparkSession", None)
    if jsession is None:  # Spark Connect
        return spark.createDataFrame([(ipad, opad)], schema)
    jvm = spark._jvm
    values = spark.sparkContext._gateway.new_array(jvm.java.lang.Object, 2)
    values[0], values[1] = ipad, opad  # Py4J hands bytes over as byte[]
    rows = jvm.java.util.ArrayList()
    rows.add(jvm.org.apache.spark.sql.RowFactory.create(values))
    jschema = jvm.org.apache.spark.sql.types.DataType.fromJson(schema.json())
    return DataFrame(jsession.createDataFrame(rows, jschema), spark)


def _message(df: Any, column: str, kind: str) -> Any:
    """The bytes a pseudonym is the HMAC of: the id as UTF-8 (other types as their string
    form, as `str()` gives them), or a binary subject key as lowercase hex. A cast to
    binary takes Spark's own UTF-8 bytes as they are (`encode` would decode and re-encode
    them, a third of the HMAC's cost)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    value = df[column]
    data_type = df.schema[column].dataType
    if isinstance(data_type, BinaryType):
        if kind != "subject_key":
            raise TypeError(f"{column!r} is binary: only a subject_key snapshot hexes it")
        return F.lower(F.hex(value)).cast("binary")
    if not isinstance(data_type, StringType):
        value = value.cast("string")
    return value.cast("binary")


def jvm_registered(spark: Any) -> bool:
    """Registers the JVM HMAC (`consent_hmac_sha256`) in `spark` when its class loads: from
    the classpath, or else from the client's jar, added to the session (`ADD JAR` also ships
    it to the executors). False when neither works: no jar built (no `javac` where the
    client was installed), or a session that cannot load classes (Spark Connect)."""
    if _register(spark):
        return True
    if not JAR.exists():
        return False
    try:
        path = JAR.as_posix().replace("\\", "\\\\").replace("'", "\\'")  # a SQL string
        spark.sql(f"ADD JAR '{path}'")
    except Exception:  # a session that cannot add jars
        return False
    return _register(spark)


def _register(spark: Any) -> bool:
    from pyspark.sql.types import BinaryType

    try:
        spark.udf.registerJavaFunction(JVM_FUNCTION, JVM_CLASS, BinaryType())
    except Exception:  # the class does not load in this session
        return False
    return True


def _hmac_jvm(ipad: Any, opad: Any, message: Any) -> Any:
    from pyspark.sql import functions as F

    return F.call_function(JVM_FUNCTION, ipad, opad, message)


def _hmac_builtin(ipad: Any, opad: Any, message: Any) -> Any:
    from pyspark.sql import functions as F

    inner = F.unhex(F.sha2(F.concat(ipad, message), 256))
    return F.unhex(F.sha2(F.concat(opad, inner), 256))


def _blocks(spark: Any, key: bytes) -> tuple[Any, Any]:
    """The key's two padded blocks as columns: scalar subqueries over the one-row frame."""
    blocks = _key_frame(spark, key)
    return blocks.select(IPAD).scalar(), blocks.select(OPAD).scalar()


def hmac_column(spark: Any, key: bytes, message: Any, *, jvm: bool | None = None) -> Any:
    """HMAC-SHA256(key, message) as a Spark column: binary, 32 bytes (empty for a null
    message, so never null). `jvm`: None uses the JVM function when it registers, False
    Spark's built-ins, True requires the JVM function."""
    from pyspark.sql import functions as F

    if jvm is None:
        jvm = jvm_registered(spark)
    elif jvm and not jvm_registered(spark):
        raise RuntimeError(f"{JVM_CLASS} does not load in this Spark session (jar: {JAR})")
    ipad, opad = _blocks(spark, key)
    digest = (_hmac_jvm if jvm else _hmac_builtin)(ipad, opad, message)
    # Not nullable, so Spark infers no `IS NOT NULL` filter on the join key: that filter
    # would compute every HMAC a second time, below the projection that computes it.
    return F.coalesce(digest, F.lit(b""))


def with_pseudonyms(
    df: Any, column: str, key: bytes, kind: str, name: str = PSEUDONYM, *, jvm: bool | None = None
) -> Any:
    """`df` with a column `name` holding HMAC-SHA256(key, id) (binary, 32 bytes); rows whose
    id is null get an empty value, which no pseudonym equals."""
    if name in df.columns:
        raise ValueError(f"the DataFrame already has a column named {name!r}")
    digest = hmac_column(df.sparkSession, key, _message(df, column, kind), jvm=jvm)
    return df.withColumn(name, digest)


def _file(snapshot: Snapshot, spark: Any, columns: list[str]) -> Any:
    """The snapshot file's `columns`, `pseudonym` named PSEUDONYM. A local Spark reads the
    downloaded file itself; elsewhere the executors cannot see the driver's disk, so the
    rows are sent from the driver's memory."""
    import pyarrow.parquet as pq

    context = getattr(spark, "_sc", None)
    if context is not None and context.master.startswith("local"):
        file = spark.read.parquet(Path(snapshot.path).resolve().as_uri()).select(*columns)
    else:
        file = spark.createDataFrame(pq.read_table(snapshot.path, columns=columns))
    return file.withColumnRenamed("pseudonym", PSEUDONYM)


def _listed(snapshot: Snapshot, spark: Any, allowed: bool) -> Any:
    """The snapshot's pseudonyms whose verdict is `allowed`, as a one-column DataFrame."""
    from pyspark.sql import functions as F

    file = _file(snapshot, spark, ["pseudonym", "allowed"])
    return file.where(F.col("allowed") == allowed).select(PSEUDONYM)


def _listed_bytes(snapshot: Snapshot, allowed: bool) -> bytes:
    """The pseudonyms whose verdict is `allowed`, back to back (32 bytes each)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(snapshot.path, columns=["pseudonym", "allowed"])
    listed = table.filter(pc.equal(table["allowed"], allowed))["pseudonym"].combine_chunks()
    if listed.type.equals(_fixed32()) and listed.null_count == 0:
        start = listed.offset * 32
        return listed.buffers()[1].to_pybytes()[start : start + len(listed) * 32]
    return b"".join(bytes(p) for p in listed.to_pylist())


def _fixed32() -> Any:
    import pyarrow as pa

    return pa.binary(32)


def _filter_function(snapshot: Snapshot, spark: Any, keep: bool) -> str | None:
    """The name of a filter function registered in `spark` for this snapshot (the listed
    pseudonyms broadcast once, kept for later calls), or None where the client's classes do
    not load. The pseudonyms reach the JVM through a file the driver's JVM reads and
    removes at once, not through the gateway's text protocol."""
    session = getattr(spark, "_jsparkSession", None)
    if session is None:
        return None
    cached = snapshot._spark_filters.get((id(session), keep))
    if cached is not None:
        return str(cached[0])
    if not jvm_registered(spark):
        return None
    filter_class = getattr(spark._jvm.org.consentgovernance.spark, "SnapshotFilter", None)
    handle, path = tempfile.mkstemp(dir=Path(snapshot.path).parent, suffix=".pseudonyms")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(_listed_bytes(snapshot, keep))
        function = filter_class.of(spark.sparkContext._jsc, path, keep)  # type: ignore[union-attr]
    except (TypeError, AttributeError):  # the class did not load through the gateway
        return None
    finally:
        os.remove(path)
    name = f"consent_snapshot_filter_{uuid.uuid4().hex}"
    boolean = spark._jvm.org.apache.spark.sql.types.DataTypes.BooleanType
    session.udf().register(name, function, boolean)
    snapshot._spark_filters[(id(session), keep)] = (name, function)
    return name


def release(snapshot: Snapshot) -> None:
    """Destroys the broadcasts of the snapshot's filter functions (Snapshot.close)."""
    for _, function in snapshot._spark_filters.values():
        with contextlib.suppress(Exception):  # a stopped session has nothing left to destroy
            function.destroy()
    snapshot._spark_filters.clear()


def filter_spark(snapshot: Snapshot, df: Any, column: str, *, broadcast: bool | None = None) -> Any:
    """The rows of `df` the snapshot allows (see `Snapshot.filter_spark`)."""
    from pyspark.sql import functions as F

    present = df.where(df[column].isNotNull())
    # Only the verdicts that decide: the allowed people when absent ids are denied, the
    # denied ones when absent ids pass.
    keep = not snapshot.default_allowed
    if broadcast is None:
        broadcast = snapshot.counts["allowed" if keep else "denied"] <= BROADCAST_MAX
    name = _filter_function(snapshot, df.sparkSession, keep) if broadcast else None
    if name is not None:
        ipad, opad = _blocks(df.sparkSession, snapshot._key)
        message = _message(present, column, snapshot.info["key"])
        return present.where(F.call_function(name, ipad, opad, message))
    pseudonymised = with_pseudonyms(present, column, snapshot._key, snapshot.info["key"])
    pseudonymised = pseudonymised.withColumn(HEAD, F.xxhash64(PSEUDONYM))
    listed = _listed(snapshot, df.sparkSession, keep).select(
        F.col(PSEUDONYM).alias(LISTED), F.xxhash64(PSEUDONYM).alias(LISTED_HEAD)
    )
    if broadcast:
        listed = F.broadcast(listed)
    # Joined on a 64-bit hash of the pseudonym, for which Spark builds a long-keyed table
    # (smaller and faster to probe than one keyed by 32 bytes); the pseudonyms themselves
    # are compared for the candidates, so a collision of hashes lets no row through. The
    # comparison is `<=` and `>=` because Spark would make an `=` a second join key.
    mine, theirs = pseudonymised[PSEUDONYM], listed[LISTED]
    same = (pseudonymised[HEAD] == listed[LISTED_HEAD]) & (mine <= theirs) & (mine >= theirs)
    how = "left_semi" if keep else "left_anti"
    return pseudonymised.join(listed, same, how).drop(PSEUDONYM, HEAD)


def distinct_pseudonyms(snapshot: Snapshot, df: Any, column: str) -> Any:
    """The distinct pseudonyms of `df[column]` as a pyarrow Table (`pseudonym`, binary(32))."""
    import pyarrow as pa

    present = df.select(column).where(df[column].isNotNull())
    named = with_pseudonyms(present, column, snapshot._key, snapshot.info["key"], "pseudonym")
    table = named.select("pseudonym").distinct().toArrow()
    return table.cast(pa.schema([pa.field("pseudonym", pa.binary(32))]))


def skew_groups(snapshot: Snapshot, df: Any, column: str, names: list[str]) -> Any:
    """The candidates of a skew report counted in the engine: the rows with an id, grouped
    by the `names` columns and the snapshot's verdict of the id (ids it does not list
    follow `default_allowed`); a pandas DataFrame of the groups (the `names` columns,
    `allowed`, `reason`, `count`), all that comes to the driver."""
    from pyspark.sql import functions as F

    present = df.select(column, *names).where(df[column].isNotNull())
    named = with_pseudonyms(present, column, snapshot._key, snapshot.info["key"])
    verdicts = _file(snapshot, df.sparkSession, ["pseudonym", "allowed", "reason"]).select(
        PSEUDONYM, F.col("allowed").alias(VERDICT), F.col("reason").alias(REASON)
    )
    if snapshot.counts["allowed"] + snapshot.counts["denied"] <= BROADCAST_MAX:
        verdicts = F.broadcast(verdicts)
    absent_allowed, absent_reason = snapshot.absent_outcome
    joined = named.join(verdicts, PSEUDONYM, "left")
    groups = joined.groupBy(
        *[joined[name] for name in names],
        F.coalesce(F.col(VERDICT), F.lit(absent_allowed)).alias("allowed"),
        F.coalesce(F.col(REASON), F.lit(absent_reason)).alias("reason"),
    ).count()
    return groups.toPandas()
