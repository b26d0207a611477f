package org.consentgovernance.spark;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.broadcast.Broadcast;
import org.apache.spark.sql.api.java.UDF3;

/**
 * Whether a row's id may be used, as a Spark SQL function {@code (ipad, opad, id bytes) ->
 * boolean}: the id's HMAC (HmacSha256) looked up in the snapshot's deciding pseudonyms,
 * broadcast once to the executors, so no join runs. {@code keepListed}: the listed are the
 * allowed (ids the file does not list are denied), or else the denied (absent ids pass).
 */
public final class SnapshotFilter implements UDF3<byte[], byte[], byte[], Boolean> {
  private static final long serialVersionUID = 1L;
  // Each task gets its own copy of this function, but an executor reads one broadcast value:
  // its table is built once and shared, by the value's identity (arrays hash by identity).
  // The two most recent are kept, so a closed snapshot's table goes with the next one.
  private static final Map<byte[], PseudonymSet> TABLES =
      new LinkedHashMap<>(4, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<byte[], PseudonymSet> eldest) {
          return size() > 2;
        }
      };
  // The pseudonyms back to back: a JDK type, whichever class loader reads the broadcast.
  private final Broadcast<byte[]> listed;
  private final boolean keepListed;
  private final HmacSha256 hmac = new HmacSha256();
  private transient PseudonymSet set;

  private SnapshotFilter(Broadcast<byte[]> listed, boolean keepListed) {
    this.listed = listed;
    this.keepListed = keepListed;
  }

  /**
   * The filter over the pseudonyms a file holds back to back (32 bytes each), read here on
   * the driver and broadcast: the bytes never cross the Python gateway.
   */
  public static SnapshotFilter of(JavaSparkContext context, String path, boolean keepListed)
      throws IOException {
    byte[] pseudonyms = Files.readAllBytes(Paths.get(path));
    if (pseudonyms.length % PseudonymSet.SIZE != 0) {
      throw new IllegalArgumentException("pseudonyms are 32 bytes each");
    }
    return new SnapshotFilter(context.broadcast(pseudonyms), keepListed);
  }

  /** Removes the broadcast pseudonyms from the driver and every executor. */
  public void destroy() {
    listed.destroy();
  }

  @Override
  public Boolean call(byte[] ipad, byte[] opad, byte[] message) throws Exception {
    if (message == null) {
      return false;
    }
    if (set == null) {
      byte[] pseudonyms = listed.value();
      synchronized (TABLES) {
        set = TABLES.computeIfAbsent(pseudonyms, PseudonymSet::new);
      }
    }
    return set.contains(hmac.call(ipad, opad, message)) == keepListed;
  }
}
