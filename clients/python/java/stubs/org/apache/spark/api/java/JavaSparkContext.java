package org.apache.spark.api.java;

import org.apache.spark.broadcast.Broadcast;

/** Compile-time stand-in for Spark's JavaSparkContext (spark-core): only what the client calls. */
public class JavaSparkContext {
  public <T> Broadcast<T> broadcast(T value) {
    throw new UnsupportedOperationException("a compile-time stand-in");
  }
}
