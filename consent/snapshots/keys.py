"""A snapshot's pseudonym key: 32 random bytes, kept AES-GCM encrypted (associated data: the
snapshot's id) until the snapshot ends, then destroyed (the column set to NULL)."""

from __future__ import annotations

import os
import uuid

from consent.errors import SnapshotNotReady
from consent.models import Snapshot
from governance import crypto


def pseudonym_key_aad(snapshot_id: uuid.UUID | str) -> bytes:
    return f"snapshot:{snapshot_id}".encode()


def pseudonym_key_new(snapshot_id: uuid.UUID) -> bytes:
    """A fresh key, encrypted for storage."""
    return crypto.encrypt(os.urandom(32), aad=pseudonym_key_aad(snapshot_id))


def pseudonym_key_of(snapshot: Snapshot) -> bytes:
    """The snapshot's 32-byte pseudonym key (SnapshotNotReady once destroyed)."""
    if snapshot.pseudonym_key_encrypted is None:
        raise SnapshotNotReady(detail={"id": str(snapshot.id), "status": snapshot.status})
    return crypto.decrypt(
        bytes(snapshot.pseudonym_key_encrypted), aad=pseudonym_key_aad(snapshot.id)
    )
