"""Encryption of values the service must read again (subject identifiers, later secrets).

AES-256-GCM under keys from the environment. Each ciphertext starts with the id of the key
that made it, so a key can rotate: the current key encrypts, old keys still decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_FORMAT = b"\x01"
_KID_LEN = 4
_NONCE_LEN = 12


class DecryptionFailed(Exception):
    """No configured key opens this ciphertext, or it was tampered with."""


def _decode_key(raw: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured("An encryption key must be base64 of 32 random bytes.") from exc
    if len(key) != 32:
        raise ImproperlyConfigured("An encryption key must be base64 of exactly 32 bytes.")
    return key


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KID_LEN]


@lru_cache(maxsize=8)
def _keyring(current: str, old: tuple[str, ...]) -> tuple[bytes, dict[bytes, AESGCM]]:
    keys = [_decode_key(current), *(_decode_key(k) for k in old)]
    ring = {key_id(k): AESGCM(k) for k in keys}
    return key_id(keys[0]), ring


def keyring() -> tuple[bytes, dict[bytes, AESGCM]]:
    return _keyring(settings.SUBJECT_ENCRYPTION_KEY, tuple(settings.SUBJECT_ENCRYPTION_OLD_KEYS))


def current_key_id() -> bytes:
    return keyring()[0]


def encrypt(plaintext: bytes, *, aad: bytes) -> bytes:
    kid, ring = keyring()
    nonce = os.urandom(_NONCE_LEN)
    return _FORMAT + kid + nonce + ring[kid].encrypt(nonce, plaintext, aad)


def ciphertext_key_id(ciphertext: bytes) -> bytes:
    return bytes(ciphertext[1 : 1 + _KID_LEN])


def decrypt(ciphertext: bytes, *, aad: bytes) -> bytes:
    blob = bytes(ciphertext)
    if not blob.startswith(_FORMAT):
        raise DecryptionFailed("unknown ciphertext format")
    _, ring = keyring()
    aead = ring.get(ciphertext_key_id(blob))
    if aead is None:
        raise DecryptionFailed("the key that encrypted this value is not configured")
    nonce = blob[1 + _KID_LEN : 1 + _KID_LEN + _NONCE_LEN]
    try:
        return aead.decrypt(nonce, blob[1 + _KID_LEN + _NONCE_LEN :], aad)
    except Exception as exc:  # cryptography raises InvalidTag
        raise DecryptionFailed("ciphertext does not verify") from exc


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


class EphemeralSpool:
    """A temporary spool whose bytes are encrypted under a key that never leaves memory.

    Streamed checks park subject identifiers (and answers naming them) in a spool that
    spills to disk beyond `max_size`; even transiently, no plaintext identifier is written
    at rest. Write everything first, then `rewind()` and read it back in order. AES-256 in
    CTR mode over the whole stream (confidentiality is what matters: the key dies with the
    object, so nothing can be tampered with and read back under it).
    """

    def __init__(self, max_size: int) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._cipher = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16)))
        self._file = tempfile.SpooledTemporaryFile(max_size=max_size)  # noqa: SIM115
        self._encryptor = self._cipher.encryptor()
        self._decryptor: Any = None
        self._pending = b""

    def write(self, data: bytes) -> None:
        self._file.write(self._encryptor.update(data))

    def rewind(self) -> None:
        """Ends writing; reading starts from the beginning."""
        self._file.seek(0)
        self._decryptor = self._cipher.decryptor()
        self._pending = b""

    def read(self, size: int) -> bytes:
        """The next block (read it with read or with read_lines, not both)."""
        return bytes(self._decryptor.update(self._file.read(size)))

    def read_lines(self, count: int, block_size: int = 64 * 1024) -> list[bytes]:
        """The next `count` lines, without their line ends."""
        lines: list[bytes] = []
        while True:
            need = count - len(lines)
            parts = self._pending.split(b"\n", need)
            lines.extend(parts[:-1])  # complete lines; the last part has no line end yet
            self._pending = parts[-1]
            if len(lines) == count:
                return lines
            block = self._file.read(block_size)
            if not block:
                raise EOFError("the spool holds fewer lines than asked for")
            self._pending += self._decryptor.update(block)

    def raw(self) -> bytes:
        """What lies in the spool's file (for tests: ciphertext only)."""
        position = self._file.tell()
        self._file.seek(0)
        data = self._file.read()
        self._file.seek(position)
        return bytes(data)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EphemeralSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
