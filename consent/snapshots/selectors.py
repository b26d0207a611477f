"""Reads of snapshots: who may see one, what it says (signed), and where its file is."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone

from consent.errors import SnapshotNotReady
from consent.models import Snapshot
from consent.snapshots import files
from consent.snapshots.keys import pseudonym_key_of
from governance.actors import Actor
from governance.api.common import iso
from governance.errors import NotFound
from governance.models import ApiClient, Scope
from governance.signing import TYP_SNAPSHOT_MANIFEST, jws_sign


def snapshot_get(*, snapshot_id: str, client: ApiClient, metadata: bool = False) -> Snapshot:
    """The snapshot, for the client that created it (any of its keys) or, with `metadata`,
    for a key with `admin`; NotFound otherwise, whether or not it exists."""
    try:
        parsed = uuid.UUID(snapshot_id)
    except ValueError as exc:
        raise NotFound("No snapshot with that id.") from exc
    snapshot = Snapshot.objects.select_related("purpose", "data_use").filter(pk=parsed).first()
    if snapshot is None or not (
        snapshot_owned_by(snapshot, client) or (metadata and client.has_scope(Scope.ADMIN))
    ):
        raise NotFound("No snapshot with that id.")
    return snapshot


def snapshot_owned_by(snapshot: Snapshot, client: ApiClient) -> bool:
    actor = Actor.for_client(client)
    return snapshot.actor_type == actor.type and snapshot.actor_id == actor.id


def snapshot_status(snapshot: Snapshot, now: datetime | None = None) -> str:
    """The status as read: `expires_at` alone governs, whether or not expiry has run yet."""
    live = snapshot.status in (Snapshot.Status.PENDING, Snapshot.Status.READY)
    if live and snapshot.expires_at <= (now or timezone.now()):
        return Snapshot.Status.EXPIRED
    return snapshot.status


def snapshot_fields(snapshot: Snapshot, now: datetime | None = None) -> dict[str, Any]:
    """Every field the manifest signs (all but the manifest and the key)."""
    return {
        "id": str(snapshot.id),
        "status": snapshot_status(snapshot, now),
        "purpose": snapshot.purpose.key,
        "data_use": snapshot.data_use.key if snapshot.data_use else None,
        "as_of": iso(snapshot.as_of),
        "namespace": snapshot.namespace,
        "key": snapshot.key_kind,
        "counts": {"allowed": snapshot.allowed_count, "denied": snapshot.denied_count},
        "default_allowed": snapshot.default_allowed,
        "file_sha256": snapshot.file_sha256 or None,
        "expires_at": iso(snapshot.expires_at),
    }


def snapshot_body(
    snapshot: Snapshot, *, with_key: bool, now: datetime | None = None
) -> dict[str, Any]:
    """The snapshot as the API shows it: its fields, a manifest (compact JWS over them) and,
    for its creator while it lives, the pseudonym key in padded standard base64."""
    fields = snapshot_fields(snapshot, now)
    key = None
    if with_key and fields["status"] in (Snapshot.Status.PENDING, Snapshot.Status.READY):
        key = base64.b64encode(pseudonym_key_of(snapshot)).decode()
    return {
        **fields,
        "manifest": jws_sign(fields, typ=TYP_SNAPSHOT_MANIFEST),
        "pseudonym_key": key,
    }


def snapshot_file(snapshot: Snapshot, now: datetime | None = None) -> Path:
    """The public file of a ready snapshot (SnapshotNotReady otherwise)."""
    path = files.public_path(snapshot.id)
    if snapshot_status(snapshot, now) != Snapshot.Status.READY or not path.is_file():
        raise SnapshotNotReady(detail={"id": str(snapshot.id)})
    return path
