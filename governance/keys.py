"""API key material: generation and hashing. Keys are shown once and stored only hashed."""

from __future__ import annotations

import hashlib
import secrets

PREFIXES = {"secret": "sk_", "publishable": "pk_"}


def generate_key(kind: str) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: nothing can be guessed offline.
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:10]
