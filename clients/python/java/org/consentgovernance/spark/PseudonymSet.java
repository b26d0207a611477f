package org.consentgovernance.spark;

import java.util.Arrays;

/**
 * A snapshot's deciding pseudonyms (32 bytes each, back to back) as an open-addressing set
 * keyed by their first 8 bytes, each candidate compared whole.
 */
final class PseudonymSet {
  static final int SIZE = 32;

  private final byte[] pseudonyms;
  private long[] heads;
  private int[] entries;
  private int mask;

  PseudonymSet(byte[] pseudonyms) {
    if (pseudonyms.length % SIZE != 0) {
      throw new IllegalArgumentException("pseudonyms are 32 bytes each");
    }
    this.pseudonyms = pseudonyms;
    index();
  }

  int size() {
    return pseudonyms.length / SIZE;
  }

  private void index() {
    int count = size();
    int capacity = Integer.highestOneBit(Math.max(count, 1) * 2 - 1) << 1;
    heads = new long[capacity];
    entries = new int[capacity];
    mask = capacity - 1;
    for (int i = 0; i < count; i++) {
      long head = head(pseudonyms, i * SIZE);
      int slot = slot(head);
      while (entries[slot] != 0) {
        slot = (slot + 1) & mask;
      }
      heads[slot] = head;
      entries[slot] = i + 1;
    }
  }

  boolean contains(byte[] pseudonym) {
    if (pseudonym == null || pseudonym.length != SIZE) {
      return false;
    }
    long head = head(pseudonym, 0);
    for (int slot = slot(head), entry; (entry = entries[slot]) != 0; slot = (slot + 1) & mask) {
      int at = (entry - 1) * SIZE;
      if (heads[slot] == head && Arrays.equals(pseudonyms, at, at + SIZE, pseudonym, 0, SIZE)) {
        return true;
      }
    }
    return false;
  }

  private int slot(long head) {
    long h = head ^ (head >>> 33);
    h *= 0xff51afd7ed558ccdL;
    return (int) (h ^ (h >>> 33)) & mask;
  }

  private static long head(byte[] bytes, int at) {
    long value = 0;
    for (int i = 0; i < 8; i++) {
      value = (value << 8) | (bytes[at + i] & 0xffL);
    }
    return value;
  }
}
