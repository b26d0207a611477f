package org.consentgovernance.spark;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import org.apache.spark.sql.api.java.UDF3;

/**
 * HMAC-SHA256 of a message from the key's two padded blocks, {@code H((K ^ opad) || H((K ^
 * ipad) || m))}, as a Spark SQL function: {@code consent_hmac_sha256(ipad, opad, message)}.
 *
 * <p>The consent client registers it when this class is on the session's classpath and
 * otherwise writes the same HMAC with Spark's own {@code sha2}, which hexes every digest into
 * a string and back. Here each thread keeps SHA-256 states that have already absorbed the two
 * blocks, so a row costs two clones and the message's own compressions.
 *
 * <p>The blocks arrive as column values (the client reads them from a one-row table through
 * scalar subqueries), never as a field of this object, so nothing secret is serialised with
 * the function or shown in a plan.
 */
public final class HmacSha256 implements UDF3<byte[], byte[], byte[], byte[]> {
  private static final long serialVersionUID = 1L;
  private static final ThreadLocal<Keyed> KEYED = new ThreadLocal<>();

  /** The SHA-256 states after the inner and the outer block of one key. */
  private static final class Keyed {
    private final byte[] ipad;
    private final MessageDigest inner;
    private final MessageDigest outer;

    Keyed(byte[] ipad, byte[] opad) throws NoSuchAlgorithmException {
      this.ipad = ipad.clone();
      inner = MessageDigest.getInstance("SHA-256");
      inner.update(ipad);
      outer = MessageDigest.getInstance("SHA-256");
      outer.update(opad);
    }
  }

  @Override
  public byte[] call(byte[] ipad, byte[] opad, byte[] message) throws Exception {
    if (ipad == null || opad == null || message == null) {
      return null;
    }
    if (ipad.length != 64 || opad.length != 64) {
      throw new IllegalArgumentException("HMAC-SHA256 key blocks are 64 bytes each");
    }
    Keyed keyed = KEYED.get();
    if (keyed == null || !MessageDigest.isEqual(keyed.ipad, ipad)) {
      keyed = new Keyed(ipad, opad);
      KEYED.set(keyed);
    }
    MessageDigest inner = (MessageDigest) keyed.inner.clone();
    inner.update(message);
    MessageDigest outer = (MessageDigest) keyed.outer.clone();
    outer.update(inner.digest());
    return outer.digest();
  }
}
