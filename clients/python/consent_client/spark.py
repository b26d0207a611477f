"""Snapshots in Spark (extra `[spark]`): pseudonyms computed by the engine itself, then one
join with the snapshot's verdicts.

The HMAC is written with Spark's own functions, `H((K ^ opad) || H((K ^ ipad) || m))` with
`sha2`, `unhex` and `concat`, so no Python UDF runs and the same code runs on a cluster. The
two padded key blocks are as secret as the key (either one gives it back by a XOR), so they
must not appear where Spark writes query text: a literal would, since binary literals are
printed in hex in every plan string and the event log's `sparkPlanInfo` (which
`spark.sql.redaction.string.regex` does not redact). They travel instead as the one row of
an in-memory relation created in the JVM through the Py4J gateway, broadcast with the query
to the executors; plans show only its column names. (PySpark's `createDataFrame` would
spool the row to a temporary file on the driver's disk first; on Spark Connect it is used
all the same, since its rows travel inside the plan message.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consent_client.snapshot import pads

if TYPE_CHECKING:
    from consent_client.snapshot import Snapshot

IPAD = "__consent_ipad"
OPAD = "__consent_opad"
PSEUDONYM = "__consent_pseudonym"


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
    form, as `str()` gives them), or a binary subject key as lowercase hex."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    value = df[column]
    data_type = df.schema[column].dataType
    if isinstance(data_type, BinaryType):
        if kind != "subject_key":
            raise TypeError(f"{column!r} is binary: only a subject_key snapshot hexes it")
        return F.encode(F.lower(F.hex(value)), "UTF-8")
    if not isinstance(data_type, StringType):
        value = value.cast("string")
    return F.encode(value, "UTF-8")


def with_pseudonyms(df: Any, column: str, key: bytes, kind: str, name: str = PSEUDONYM) -> Any:
    """`df` with a column `name` holding HMAC-SHA256(key, id) (binary, 32 bytes)."""
    from pyspark.sql import functions as F

    clash = {IPAD, OPAD, name} & set(df.columns)
    if clash:
        raise ValueError(f"the DataFrame already has a column named {sorted(clash)[0]!r}")
    message = _message(df, column, kind)
    inner = F.unhex(F.sha2(F.concat(F.col(IPAD), message), 256))
    outer = F.unhex(F.sha2(F.concat(F.col(OPAD), inner), 256))
    keyed = df.crossJoin(F.broadcast(_key_frame(df.sparkSession, key)))
    return keyed.withColumn(name, outer).drop(IPAD, OPAD)


def filter_spark(snapshot: Snapshot, df: Any, column: str) -> Any:
    """The rows of `df` the snapshot allows (see `Snapshot.filter_spark`)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    present = df.where(df[column].isNotNull())
    pseudonymised = with_pseudonyms(present, column, snapshot._key, snapshot.info["key"])
    # Only the verdicts that decide: the allowed people when absent ids are denied, the
    # denied ones when absent ids pass.
    keep = not snapshot.default_allowed
    table = pq.read_table(snapshot.path, columns=["pseudonym", "allowed"])
    listed = table.filter(pc.equal(table["allowed"], keep)).select(["pseudonym"])
    verdicts = df.sparkSession.createDataFrame(listed.rename_columns([PSEUDONYM]))
    how = "left_semi" if keep else "left_anti"
    return pseudonymised.join(verdicts, PSEUDONYM, how).drop(PSEUDONYM)


def distinct_pseudonyms(snapshot: Snapshot, df: Any, column: str) -> Any:
    """The distinct pseudonyms of `df[column]` as a pyarrow Table (`pseudonym`, binary(32))."""
    import pyarrow as pa

    present = df.select(column).where(df[column].isNotNull())
    named = with_pseudonyms(present, column, snapshot._key, snapshot.info["key"], "pseudonym")
    table = named.select("pseudonym").distinct().toArrow()
    return table.cast(pa.schema([pa.field("pseudonym", pa.binary(32))]))
