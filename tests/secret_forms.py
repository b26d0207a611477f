"""How a secret could be spelled in a page, a log or any text file, for tests that search
for it: raw, hex (either case), base64 (standard and URL-safe, with and without padding),
and base64 of a run inside it (base64 of a longer value holding it is aligned differently)."""

from __future__ import annotations

import base64


def secret_forms(secret: bytes) -> list[bytes]:
    b64 = base64.b64encode(secret)
    url = base64.urlsafe_b64encode(secret)
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        b64,
        b64.rstrip(b"="),
        url,
        url.rstrip(b"="),
        *(base64.b64encode(secret[i : i + 24])[:-4] for i in range(3)),
    ]
