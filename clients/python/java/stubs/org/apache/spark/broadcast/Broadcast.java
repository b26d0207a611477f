package org.apache.spark.broadcast;

import java.io.Serializable;

/** Compile-time stand-in for Spark's Broadcast (spark-core): only what the client calls. */
public abstract class Broadcast<T> implements Serializable {
  public T value() {
    throw new UnsupportedOperationException("a compile-time stand-in");
  }

  public void destroy() {
    throw new UnsupportedOperationException("a compile-time stand-in");
  }
}
