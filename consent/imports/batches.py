"""An import's validated records at rest: one encrypted blob per batch (AES-GCM under the
service's key, associated data naming the import and the batch), until it is applied."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from consent.imports.formats import ImportRecord
from governance import crypto


def batch_aad(import_id: uuid.UUID | str, index: int) -> bytes:
    return f"consent-import:{import_id}:{index}".encode()


def batch_encrypt(import_id: uuid.UUID, index: int, records: Sequence[ImportRecord]) -> bytes:
    plaintext = json.dumps([r.as_list() for r in records], separators=(",", ":")).encode()
    return crypto.encrypt(plaintext, aad=batch_aad(import_id, index))


def batch_decrypt(import_id: uuid.UUID, index: int, ciphertext: bytes) -> list[ImportRecord]:
    plaintext = crypto.decrypt(bytes(ciphertext), aad=batch_aad(import_id, index))
    return [ImportRecord.of_list(values) for values in json.loads(plaintext)]
