"""Streamed checks spool subject identifiers; what reaches the spool's file is ciphertext."""

from __future__ import annotations

import pytest

from governance.crypto import EphemeralSpool


def test_spool_on_disk_holds_no_plaintext_identifier() -> None:
    lines = [f"person-{i}@example.com".encode() for i in range(5_000)]
    with EphemeralSpool(max_size=1024) as spool:  # small: spills to a file on disk
        for start in range(0, len(lines), 700):
            spool.write(b"\n".join(lines[start : start + 700]) + b"\n")
        on_disk = spool.raw()
        assert b"person-" not in on_disk and b"example.com" not in on_disk
        spool.rewind()
        assert spool.read_lines(3) == lines[:3]
        assert spool.read_lines(4_996) == lines[3:4_999]
        assert spool.read_lines(1) == lines[4_999:]
        with pytest.raises(EOFError):
            spool.read_lines(1)


def test_spool_reads_back_in_blocks_of_any_size() -> None:
    data = b"".join(f'{{"subject_id":"u-{i}","allowed":true}}\n'.encode() for i in range(3_000))
    with EphemeralSpool(max_size=100) as spool:
        spool.write(data[:12_345])
        spool.write(data[12_345:])
        spool.rewind()
        read = b""
        while block := spool.read(4_096):
            read += block
    assert read == data


def test_two_spools_with_the_same_content_differ_on_disk() -> None:
    first, second = EphemeralSpool(max_size=10), EphemeralSpool(max_size=10)
    with first, second:
        first.write(b"same identifier\n")
        second.write(b"same identifier\n")
        assert first.raw() != second.raw()
