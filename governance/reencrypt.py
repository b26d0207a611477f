"""Re-encryption under the current key, for `python manage.py rotate_encryption_key`.

Each app registers the columns it keeps encrypted (with how their associated data is
made), so governance needs to import no app. The rule that keeps the registry complete
(see `encrypted_fields_unregistered`): ciphertext lives only in BinaryFields named
`..._encrypted`, never inside JSON or text, and every such field is registered here.
Rotation walks each table in primary-key batches, each batch its own short transaction
with its rows locked; a value already under the current key is left alone, so the command
can be stopped and run again. Reads keep working throughout because the old key stays in
SUBJECT_ENCRYPTION_OLD_KEYS until the command reports nothing left under it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import models, transaction

from governance import crypto


@dataclass(frozen=True)
class EncryptedField:
    model: type[models.Model]
    field: str
    aad: Callable[[Any], bytes]

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field}"


_REGISTRY: list[EncryptedField] = []


def register_encrypted_field(
    model: type[models.Model], field: str, aad: Callable[[Any], bytes]
) -> None:
    spec = EncryptedField(model, field, aad)
    if all(s.label != spec.label for s in _REGISTRY):
        _REGISTRY.append(spec)


def encrypted_fields() -> list[EncryptedField]:
    return list(_REGISTRY)


def encrypted_fields_unregistered() -> list[str]:
    """Model fields that break the rule, as `app.Model.field: why` (empty when none does).

    Every BinaryField of every installed model is taken to hold ciphertext (the service
    keeps no other binary data), so it must be named `..._encrypted`; every field so named
    must be registered, or rotation would leave it under a key that is about to go.
    """
    registered = {spec.label for spec in _REGISTRY}
    problems = []
    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            label = f"{model._meta.label}.{f.name}"
            binary = isinstance(f, models.BinaryField)
            if binary and not f.name.endswith("_encrypted"):
                problems.append(f"{label}: a BinaryField not named ..._encrypted")
            elif f.name.endswith("_encrypted") and not binary:
                problems.append(f"{label}: named ..._encrypted but not a BinaryField")
            elif binary and label not in registered:
                problems.append(f"{label}: not registered with register_encrypted_field")
    return problems


@dataclass
class FieldProgress:
    label: str
    scanned: int = 0
    rewritten: int = 0


def reencrypt_field(
    spec: EncryptedField,
    *,
    batch_size: int = 500,
    after_batch: Callable[[FieldProgress], None] | None = None,
) -> FieldProgress:
    progress = FieldProgress(spec.label)
    current = crypto.current_key_id()
    last_pk: Any = None
    while True:
        with transaction.atomic():
            qs = spec.model._default_manager.exclude(**{f"{spec.field}__isnull": True})
            if last_pk is not None:
                qs = qs.filter(pk__gt=last_pk)
            rows = list(qs.order_by("pk").select_for_update()[:batch_size])
            if not rows:
                return progress
            changed = []
            for row in rows:
                blob = bytes(getattr(row, spec.field))
                progress.scanned += 1
                if crypto.ciphertext_key_id(blob) == current:
                    continue
                aad = spec.aad(row)
                setattr(row, spec.field, crypto.encrypt(crypto.decrypt(blob, aad=aad), aad=aad))
                changed.append(row)
            if changed:
                spec.model._default_manager.bulk_update(changed, [spec.field])
            progress.rewritten += len(changed)
            last_pk = rows[-1].pk
        if after_batch is not None:
            after_batch(progress)


def remaining_under_old_keys(spec: EncryptedField) -> int:
    current = crypto.current_key_id()
    values = spec.model._default_manager.exclude(**{f"{spec.field}__isnull": True}).values_list(
        spec.field, flat=True
    )
    return sum(1 for blob in values.iterator() if crypto.ciphertext_key_id(bytes(blob)) != current)
