"""The client: bulk checks, chunked filtering, the NDJSON stream, a pandas helper and
snapshots."""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from consent_client import skew
from consent_client.errors import ConsentApiError, TransientError, error_for
from consent_client.snapshot import (
    Snapshot,
    SnapshotError,
    SnapshotVerificationError,
    download_verified,
    verify_manifest,
)

CARD_TYP = "dataset-card+jws"

MAX_BULK_IDS = 100_000
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class CheckResult:
    decision_id: str
    purpose: str
    as_of: str
    allowed: list[str]
    denied: list[str]
    results: list[dict[str, Any]] = field(default_factory=list)
    skew: dict[str, Any] | None = None


@dataclass
class SubjectCheck:
    subject_id: str
    purpose: str
    allowed: bool
    reason: str
    event_id: str | None
    as_of: str | None


def _attribute_values(attributes: Mapping[str, Any]) -> dict[str, str | None]:
    return {name: skew.attribute_value(value) for name, value in attributes.items()}


def _instant(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (or an ISO-8601 string)")
        return value.isoformat()
    return value


class ConsentClient:
    """Talks to one service with one secret key (scope `checks`).

    Transient failures are retried `retries` times with exponential backoff from
    `backoff` seconds (Retry-After wins when the server sends it); 4xx raise typed errors.
    A retried bulk check may leave two Decision rows on the server if the first answer was
    lost: they describe the same question.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self._sleep = sleep
        self.last_summary: dict[str, Any] | None = None

    # --- transport ------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}{path}"
        attempt = 0
        while True:
            seek = getattr(kwargs.get("data"), "seek", None)
            if callable(seek):
                seek(0)  # a spooled body is re-sent from its start
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.retries:
                    raise TransientError(f"{method} {path} failed: {exc}") from exc
                self._sleep(self.backoff * 2**attempt)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            if response.status_code in TRANSIENT_STATUSES and attempt < self.retries:
                retry_after = response.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.isdigit() else self.backoff * 2**attempt
                response.close()
                self._sleep(wait)
                attempt += 1
                continue
            try:
                payload: Any = response.json()
            except ValueError:
                payload = response.text
            raise error_for(response.status_code, payload)

    # --- checks ---------------------------------------------------------------------------

    def check(
        self,
        ids: Iterable[str],
        purpose: str,
        as_of: datetime | str | None = None,
        *,
        data_use: str | None = None,
        explain: bool = False,
        lineage: bool = False,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> CheckResult:
        """One bulk check (up to 100,000 ids): allowed and denied ids, and the decision id.

        With `attributes` ({id: {name: value}}: at most 5 names, 50 values each; values
        become strings, missing ones null), the result carries the consent-skew report."""
        subject_ids = list(ids)
        if len(subject_ids) > MAX_BULK_IDS:
            raise ValueError(
                f"at most {MAX_BULK_IDS} ids per check; use filter_allowed() or stream()"
            )
        body: dict[str, Any] = {"purpose": purpose, "subject_ids": subject_ids}
        if as_of is not None:
            body["as_of"] = _instant(as_of)
        if data_use:
            body["data_use"] = data_use
        if explain:
            body["explain"] = True
        if lineage:
            body["lineage"] = True
        if attributes is not None:
            body["attributes"] = {k: _attribute_values(v) for k, v in attributes.items()}
        data = self._request("POST", "/api/v1/checks", json=body).json()
        return CheckResult(
            decision_id=data["decision_id"],
            purpose=data["purpose"],
            as_of=data["as_of"],
            allowed=data["allowed"],
            denied=data["denied"],
            results=data.get("results", []),
            skew=data.get("skew"),
        )

    def check_one(
        self, subject_id: str, purpose: str, as_of: datetime | str | None = None
    ) -> SubjectCheck:
        from urllib.parse import quote

        params = {"as_of": _instant(as_of)} if as_of is not None else None
        path = f"/api/v1/subjects/{quote(subject_id, safe='')}/checks/{quote(purpose, safe='')}"
        data = self._request("GET", path, params=params).json()
        return SubjectCheck(
            subject_id=data["subject_id"],
            purpose=data["purpose"],
            allowed=data["allowed"],
            reason=data["reason"],
            event_id=data["event_id"],
            as_of=data["as_of"],
        )

    def filter_allowed(
        self,
        iterable: Iterable[str],
        purpose: str,
        *,
        as_of: datetime | str | None = None,
        data_use: str | None = None,
        lineage: bool = False,
        chunk_size: int = 20_000,
    ) -> Iterator[str]:
        """Yields the allowed ids of `iterable`, in order, checking a chunk at a time.

        Memory stays at one chunk; each chunk is one bulk check (one Decision on the server).
        """
        if not 1 <= chunk_size <= MAX_BULK_IDS:
            raise ValueError(f"chunk_size must be from 1 to {MAX_BULK_IDS}")
        iterator = iter(iterable)
        while chunk := list(itertools.islice(iterator, chunk_size)):
            result = self.check(chunk, purpose, as_of, data_use=data_use, lineage=lineage)
            yield from result.allowed

    def stream(
        self,
        ids: Iterable[str],
        purpose: str,
        *,
        as_of: datetime | str | None = None,
        data_use: str | None = None,
        lineage: bool = False,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One streamed check (/checks/stream) over any number of ids: one Decision.
        With `attributes` as for check(), the summary carries the skew report.

        The NDJSON body is spooled to a temporary file first (sent with a Content-Length, so
        it works through any proxy and can be retried); answers are read line by line.
        The summary line is kept in `last_summary`.
        """
        params: dict[str, str] = {"purpose": purpose}
        if as_of is not None:
            params["as_of"] = _instant(as_of) or ""
        if data_use:
            params["data_use"] = data_use
        if lineage:
            params["lineage"] = "true"
        self.last_summary = None
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as body:
            for subject_id in ids:
                item: dict[str, Any] = {"subject_id": subject_id}
                if attributes is not None and subject_id in attributes:
                    item["attributes"] = _attribute_values(attributes[subject_id])
                body.write(json.dumps(item).encode() + b"\n")
            response = self._request(
                "POST",
                "/api/v1/checks/stream",
                params=params,
                data=body,
                headers={"Content-Type": "application/x-ndjson"},
                stream=True,
            )
            with response:
                for line in response.iter_lines(chunk_size=64 * 1024):
                    if not line:
                        continue
                    item = json.loads(line)
                    if "summary" in item:
                        self.last_summary = item["summary"]
                    else:
                        yield item
        if self.last_summary is None:
            raise TransientError("the stream ended before its summary line")

    def keep_allowed(
        self,
        df: Any,
        purpose: str,
        *,
        column: str = "subject_id",
        as_of: datetime | str | None = None,
        data_use: str | None = None,
        lineage: bool = False,
        chunk_size: int = 20_000,
    ) -> Any:
        """The rows of a pandas DataFrame whose `column` holds an allowed subject id."""
        ids = df[column].astype(str)
        allowed = set(
            self.filter_allowed(
                dict.fromkeys(ids.tolist()),
                purpose,
                as_of=as_of,
                data_use=data_use,
                lineage=lineage,
                chunk_size=chunk_size,
            )
        )
        return df[ids.isin(allowed)]

    # --- decisions and data uses -------------------------------------------------------------

    def decision(self, decision_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", f"/api/v1/decisions/{decision_id}").json()
        return data

    def card(self, decision_id: str) -> dict[str, Any]:
        """The dataset consent card of a decision, its JWS verified against the service's
        JWKS (typ dataset-card+jws) and equal to every other field it carries; raises
        SnapshotVerificationError otherwise."""
        card: dict[str, Any] = self._request("GET", f"/api/v1/decisions/{decision_id}/card").json()
        jwks: dict[str, Any] = self._request("GET", "/.well-known/jwks.json").json()
        payload = verify_manifest(str(card.get("jws", "")), jwks, typ=CARD_TYP)
        if payload != {k: v for k, v in card.items() if k != "jws"}:
            raise SnapshotVerificationError("the card's signature does not cover what it says")
        return card

    def drift(self, decision_id: str) -> Iterator[dict[str, Any]]:
        """Every subject the decision allowed that is denied now, page after page."""
        cursor: int | None = 0
        while cursor is not None:
            page = self._request(
                "GET", f"/api/v1/decisions/{decision_id}/drift", params={"cursor": cursor}
            ).json()
            yield from page["drifted"]
            cursor = page["next_cursor"]

    def data_uses(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._request("GET", "/api/v1/data-uses").json()["data_uses"]
        return data

    # --- snapshots ---------------------------------------------------------------------------

    def snapshot(
        self,
        purpose: str | None = None,
        *,
        data_use: str | None = None,
        as_of: datetime | str | None = None,
        key: str = "identifier",
        wait: float = 600.0,
        poll: float = 0.2,
        max_poll: float = 5.0,
    ) -> Snapshot:
        """Creates a snapshot (name a purpose or a data use), waits for it with backoff (up
        to `wait` seconds), verifies its manifest against the service's JWKS and downloads
        the file, refusing any mismatch (SnapshotVerificationError). The key stays in the
        returned object's memory; use it as a context manager, or close() it."""
        body: dict[str, Any] = {"key": key}
        if purpose is not None:
            body["purpose"] = purpose
        if data_use is not None:
            body["data_use"] = data_use
        if as_of is not None:
            body["as_of"] = _instant(as_of)
        snapshot_id = self._request("POST", "/api/v1/snapshots", json=body).json()["id"]
        deadline = time.monotonic() + wait
        delay = poll
        while True:
            info: dict[str, Any] = self._request("GET", f"/api/v1/snapshots/{snapshot_id}").json()
            if info["status"] == "ready":
                break
            if info["status"] != "pending":
                raise SnapshotError(f"snapshot {snapshot_id} is {info['status']}")
            if time.monotonic() + delay > deadline:
                raise SnapshotError(f"snapshot {snapshot_id} not ready after {wait} s")
            self._sleep(delay)
            delay = min(delay * 2, max_poll)
        jwks: dict[str, Any] = self._request("GET", "/.well-known/jwks.json").json()
        return download_verified(self, info, jwks)


__all__ = ["CheckResult", "ConsentApiError", "ConsentClient", "Snapshot", "SubjectCheck"]
