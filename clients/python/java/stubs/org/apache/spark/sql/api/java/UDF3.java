package org.apache.spark.sql.api.java;

import java.io.Serializable;

/**
 * Compile-time stand-in for Spark's public Java UDF interface of three arguments (spark-sql-api),
 * so the client's jar builds without pyspark installed. Never packaged: at run time Spark's own
 * interface, of the same name and erasure, is the one loaded.
 */
public interface UDF3<T1, T2, T3, R> extends Serializable {
  R call(T1 t1, T2 t2, T3 t3) throws Exception;
}
