"""Snapshots: a verified, in-memory-keyed copy of one purpose's decisions, to filter
training data offline and report what was used.

The file is downloaded only after its manifest (a compact ES256 JWS with its own `typ`)
verifies against the service's JWKS and says exactly what the API said; the file's SHA-256
must match the manifest. The pseudonym key stays in this object's memory and is never
written anywhere. A pseudonym is HMAC-SHA256(key, id as UTF-8): an identifier for
`key="identifier"` snapshots, the service's subject key (hex) for `key="subject_key"`.

Engines get their own method: `filter_pandas`, and `filter_spark` (consent_client.spark),
which computes the same HMAC in the engine; `record_usage` takes either kind of frame.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from consent_client import skew as skew_module

if TYPE_CHECKING:
    from consent_client.client import ConsentClient

MANIFEST_TYP = "snapshot-manifest+jws"
SKEW_METADATA_KEY = "consent.skew"
PARQUET = "application/vnd.apache.parquet"
# Every field of the API's answer that the manifest signs.
SIGNED_FIELDS = (
    "id",
    "status",
    "purpose",
    "data_use",
    "as_of",
    "namespace",
    "key",
    "counts",
    "default_allowed",
    "file_sha256",
    "expires_at",
)


class SnapshotError(Exception):
    """The snapshot could not be had: it failed or expired on the server, or took too long."""


class SnapshotVerificationError(SnapshotError):
    """The manifest does not verify, says something else than the API, or the file's hash
    does not match it: nothing from this snapshot may be used."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_manifest(token: str, jwks: dict[str, Any], *, typ: str = MANIFEST_TYP) -> dict[str, Any]:
    """The payload of a compact ES256 JWS of kind `typ` signed by a key of `jwks`."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64url(header_b64))
        payload = json.loads(_b64url(payload_b64))
        signature = _b64url(signature_b64)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SnapshotVerificationError("the manifest is not a compact JWS") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise SnapshotVerificationError("the manifest is not signed with ES256")
    found = str(header.get("typ", "")).lower().removeprefix("application/")
    if found != typ:
        raise SnapshotVerificationError(f"the manifest's typ is {header.get('typ')!r}, not {typ!r}")
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if jwk is None or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or len(signature) != 64:
        raise SnapshotVerificationError("the manifest's signing key is not in the JWKS")
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64url(jwk["x"]), "big"),
        int.from_bytes(_b64url(jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SnapshotVerificationError("the manifest's signature does not verify") from exc
    if not isinstance(payload, dict):
        raise SnapshotVerificationError("the manifest's payload is not an object")
    return payload


def pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC's two key blocks: the key zero-padded to SHA-256's 64 bytes, XOR ipad and opad."""
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


class Hmac:
    """HMAC-SHA256 under one key, keyed once: the inner and outer states are copied per value."""

    def __init__(self, key: bytes) -> None:
        ipad, opad = pads(key)
        self._inner = hashlib.sha256(ipad)
        self._outer = hashlib.sha256(opad)

    def many(self, values: Iterable[str]) -> list[bytes]:
        inner0, outer0 = self._inner, self._outer
        out: list[bytes] = []
        append = out.append
        for value in values:
            inner = inner0.copy()
            inner.update(value.encode("utf-8"))
            outer = outer0.copy()
            outer.update(inner.digest())
            append(outer.digest())
        return out


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "snapshots need pyarrow: pip install 'consent-governance-client[pandas]'"
        ) from exc
    return pq


@dataclass(repr=False)
class Snapshot:
    """A ready snapshot, verified: its metadata, the downloaded file (`path`) and the key."""

    client: ConsentClient
    info: dict[str, Any]
    path: str
    _key: bytes = field(repr=False)
    _verdicts: dict[bytes, bool] | None = field(default=None, repr=False)
    last_usage: dict[str, Any] | None = None
    # Spark filter functions registered for this snapshot: (session, keep) -> (name, broadcast).
    _spark_filters: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._hmac = Hmac(self._key)
        # The downloaded file goes when the object does, if close() was not called.
        self._cleanup = weakref.finalize(self, _remove, self.path)

    def __repr__(self) -> str:
        return f"Snapshot(id={self.id!r}, purpose={self.purpose!r}, as_of={self.as_of!r})"

    @property
    def id(self) -> str:
        return str(self.info["id"])

    @property
    def purpose(self) -> str:
        return str(self.info["purpose"])

    @property
    def data_use(self) -> str | None:
        return self.info["data_use"]

    @property
    def as_of(self) -> str:
        return str(self.info["as_of"])

    @property
    def expires_at(self) -> str:
        return str(self.info["expires_at"])

    @property
    def default_allowed(self) -> bool:
        """How an id absent from the file is treated (someone the service never saw)."""
        return bool(self.info["default_allowed"])

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.info["counts"])

    # --- shared by every engine ------------------------------------------------------------

    def pseudonyms(self, values: Iterable[str]) -> list[bytes]:
        """HMAC-SHA256(key, value as UTF-8) of each value: how the file names people."""
        return self._hmac.many(values)

    def verdicts(self) -> dict[bytes, bool]:
        """pseudonym -> allowed, read once from the file."""
        if self._verdicts is None:
            table = _pyarrow().read_table(self.path, columns=["pseudonym", "allowed"])
            self._verdicts = dict(
                zip(table["pseudonym"].to_pylist(), table["allowed"].to_pylist(), strict=True)
            )
        return self._verdicts

    def outcomes(self, values: list[str]) -> list[tuple[bool, str]]:
        """(allowed, reason) of each value, as the service would answer a check of it: ids
        the file does not list follow `default_allowed` (reason no_consent when denied)."""
        table = _pyarrow().read_table(self.path, columns=["pseudonym", "allowed", "reason"])
        found = dict(
            zip(
                table["pseudonym"].to_pylist(),
                zip(table["allowed"].to_pylist(), table["reason"].to_pylist(), strict=True),
                strict=True,
            )
        )
        absent = self.absent_outcome
        return [found.get(p, absent) for p in self.pseudonyms(values)]

    @property
    def absent_outcome(self) -> tuple[bool, str]:
        """(allowed, reason) of an id the file does not list."""
        return self.default_allowed, "unknown" if self.default_allowed else "no_consent"

    def _allowed_values(self, values: list[str]) -> list[str]:
        verdicts = self.verdicts()
        default = self.default_allowed
        return [
            value
            for value, pseudonym in zip(values, self.pseudonyms(values), strict=True)
            if verdicts.get(pseudonym, default)
        ]

    # --- pandas ----------------------------------------------------------------------------

    @staticmethod
    def _distinct(df: Any, column: str) -> list[str]:
        import pandas as pd

        return [str(v) for v in pd.unique(df[column].dropna())]

    def filter_pandas(self, df: Any, column: str) -> Any:
        """The rows of `df` that may be used: `column` is pseudonymised and joined with the
        file; ids it does not list follow `default_allowed`; missing ids (NaN) are dropped."""
        values = df[column]
        allowed = self._allowed_values(self._distinct(df, column))
        keep = values.notna() & values.astype(str).isin(allowed)
        return df[keep]

    def skew(self, df: Any, column: str, *, by: Iterable[str]) -> dict[str, Any]:
        """The consent-skew report of filtering `df` by this snapshot, computed here from
        the `by` columns (never sent anywhere): the same numbers the service gives a bulk
        check of the same ids with those attributes (consent_client.skew). Rows whose
        `column` is missing are not candidates; each other row is one. `df` may be a pandas
        or a Spark DataFrame."""
        names = list(by)
        if hasattr(df, "sparkSession"):
            # A Spark DataFrame: counted in the engine, only the groups come to the driver.
            from consent_client import spark

            groups = spark.skew_groups(self, df, column, names)
            return skew_module.report_of_groups(
                names,
                [
                    (
                        [skew_module.attribute_value(v) for v in values[: len(names)]],
                        bool(values[-3]),
                        str(values[-2]),
                        int(values[-1]),
                    )
                    for values in groups.itertuples(index=False, name=None)
                ],
            )
        rows = df[df[column].notna()]
        outcomes = self.outcomes(rows[column].astype(str).tolist())
        columns = {
            name: [skew_module.attribute_value(v) for v in rows[name].tolist()] for name in names
        }
        return skew_module.report_of_columns(
            columns, [o[0] for o in outcomes], [o[1] for o in outcomes]
        )

    # --- Spark -----------------------------------------------------------------------------

    def filter_spark(self, df: Any, column: str, *, broadcast: bool | None = None) -> Any:
        """The rows of the Spark DataFrame `df` that may be used, as a lazy DataFrame: Spark
        computes each id's pseudonym in the JVM (no Python UDF) and looks it up in the
        file's deciding pseudonyms, broadcast once to every executor (or, without the
        client's jar, joins with them); ids the file does not list follow `default_allowed`;
        nulls are dropped. The key reaches the executors inside the query only (see
        `consent_client.spark`). `broadcast`: send the verdicts to every executor (default:
        when they are at most 4,000,000) rather than shuffle `df` through a join. Needs the
        extra `[spark]`."""
        from consent_client import spark

        return spark.filter_spark(self, df, column, broadcast=broadcast)

    # --- usage -----------------------------------------------------------------------------

    def record_usage(
        self, df: Any, column: str, *, model: str, skew: dict[str, Any] | None = None
    ) -> str:
        """Reports the distinct people of `df` (the rows actually used; a pandas or a Spark
        DataFrame) as the training set of `model`; returns the decision id. The service
        refuses (BadRequest, `denied_in_snapshot`) an upload holding anyone the snapshot
        does not allow. A `skew` report (from `skew()`) goes along in the Parquet metadata
        and is kept with the decision and on its card."""
        import pyarrow as pa

        if hasattr(df, "sparkSession"):  # Spark hashes and deduplicates in the engine
            from consent_client import spark

            table = spark.distinct_pseudonyms(self, df, column)
        else:
            pseudonyms = self.pseudonyms(self._distinct(df, column))
            table = pa.table({"pseudonym": pa.array(pseudonyms, pa.binary(32))})
        sink = io.BytesIO()
        if skew is not None:
            table = table.replace_schema_metadata({SKEW_METADATA_KEY: json.dumps(skew)})
        _pyarrow().write_table(table, sink)
        response = self.client._request(
            "POST",
            f"/api/v1/snapshots/{self.id}/usage",
            params={"model": model},
            data=sink.getvalue(),
            headers={"Content-Type": PARQUET},
        )
        self.last_usage = response.json()
        return str(self.last_usage["decision_id"])

    def card(self) -> dict[str, Any]:
        """The verified dataset consent card of the last recorded usage."""
        if self.last_usage is None:
            raise SnapshotError("record_usage() first: the card describes a usage decision")
        return self.client.card(str(self.last_usage["decision_id"]))

    # --- the end ---------------------------------------------------------------------------

    def close(self) -> None:
        """Forgets the key and removes the downloaded file."""
        self._key = b""
        self._hmac = Hmac(os.urandom(32))
        self._verdicts = None
        if self._spark_filters:
            from consent_client import spark

            spark.release(self)
        self._cleanup()

    def delete(self) -> None:
        """Deletes the snapshot on the server (file and key), then closes this copy."""
        self.client._request("DELETE", f"/api/v1/snapshots/{self.id}")
        self.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def download_verified(
    client: ConsentClient, info: dict[str, Any], jwks: dict[str, Any]
) -> Snapshot:
    """Verifies the manifest against `jwks` and the API's answer, downloads the file while
    hashing it, and refuses any mismatch."""
    payload = verify_manifest(info.get("manifest", ""), jwks)
    if payload != {k: info.get(k) for k in SIGNED_FIELDS} or set(payload) != set(SIGNED_FIELDS):
        raise SnapshotVerificationError("the manifest does not sign what the API answered")
    if payload["status"] != "ready" or not payload["file_sha256"]:
        raise SnapshotError(f"the snapshot is {payload['status']}")
    try:
        key = base64.b64decode(info.get("pseudonym_key") or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SnapshotVerificationError("the pseudonym key is not base64") from exc
    if len(key) != 32:
        raise SnapshotVerificationError("the pseudonym key is not 32 bytes")
    digest = hashlib.sha256()
    fd, path = tempfile.mkstemp(prefix="consent-snapshot-", suffix=".parquet")
    try:
        response = client._request("GET", f"/api/v1/snapshots/{payload['id']}/file", stream=True)
        with response, os.fdopen(fd, "wb") as out:
            for block in response.iter_content(chunk_size=1024 * 1024):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != payload["file_sha256"]:
            raise SnapshotVerificationError("the file's SHA-256 does not match the manifest")
    except BaseException:
        _remove(path)
        raise
    return Snapshot(client=client, info=payload, path=path, _key=key)
