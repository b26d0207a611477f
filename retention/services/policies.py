"""Retention policies: checked against the registry (a 4xx, nothing saved, when they do not
fit their target), created, updated and seeded, each change audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import FieldError, ValidationError
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_duration

from consent.models import Purpose
from governance.actors import Actor
from governance.audit import audit_record
from retention.errors import (
    DuplicatePolicy,
    InvalidCondition,
    InvalidDuration,
    InvalidPolicy,
    RetentionBelowMinimum,
    UnknownTarget,
)
from retention.models import PolicyAction, RetentionPolicy
from retention.registry import minimum_keep, target_get, targets
from retention.targets.base import ErasureMode, Target
from retention.targets.rows import ModelRows


def duration_parse(value: Any) -> timedelta:
    """A positive duration from a timedelta, ISO 8601 ("P30D") or Django's "30 00:00:00"."""
    if isinstance(value, timedelta):
        parsed: timedelta | None = value
    elif isinstance(value, str) and len(value) <= 64:
        parsed = parse_duration(value.strip())
    else:
        parsed = None
    if parsed is None:
        raise InvalidDuration(detail={"field": "keep_for", "value": str(value)[:64]})
    if parsed <= timedelta(0):
        raise InvalidDuration(
            "keep_for must be longer than zero.", detail={"field": "keep_for", "value": value}
        )
    if parsed > timedelta(days=365 * 100):
        raise InvalidDuration(
            "keep_for must be at most 100 years.", detail={"field": "keep_for", "value": value}
        )
    return parsed


def _condition_validate(target: Target, condition: Any) -> dict[str, Any]:
    if condition in (None, {}):
        return {}
    if not isinstance(condition, dict):
        raise InvalidCondition("condition must be a JSON object.", detail={"field": "condition"})
    if not (target.takes_condition and isinstance(target, ModelRows)):
        raise InvalidCondition(
            "This target takes no condition.", detail={"field": "condition", "target": target.name}
        )
    model = target.model
    for name in condition:
        if not isinstance(name, str) or not name:
            raise InvalidCondition(detail={"field": "condition"})
        base = name.split("__")[0]
        try:
            model._meta.get_field(base)
        except Exception as exc:
            raise InvalidCondition(
                f"{target.name} has no field {base!r}.",
                detail={"field": "condition", "missing": base},
            ) from exc
    try:
        qs = model._default_manager.filter(**condition)
        str(qs.query)
    except (FieldError, ValidationError, ValueError, TypeError) as exc:
        raise InvalidCondition(str(exc)[:300], detail={"field": "condition"}) from exc
    if len(qs.query.alias_map) > 1:
        raise InvalidCondition(
            "A condition may only name the target's own fields, not related ones.",
            detail={"field": "condition"},
        )
    return dict(condition)


@dataclass(frozen=True)
class PolicyInput:
    name: str
    target: str
    keep_for: Any
    action: str = PolicyAction.DELETE
    condition: dict[str, Any] | None = None
    batch_size: int = 10_000
    enabled: bool = True
    purpose: str | None = None


@dataclass(frozen=True)
class CleanPolicy:
    name: str
    target: str
    keep_for: timedelta
    action: str
    condition: dict[str, Any]
    batch_size: int
    enabled: bool
    purpose: Purpose | None


def policy_validate(data: PolicyInput) -> CleanPolicy:
    """Checks a policy against the registry; raises a 4xx DomainError, saves nothing."""
    if not data.name or len(data.name) > 120:
        raise InvalidPolicy("name must be 1 to 120 characters.", detail={"field": "name"})
    target = target_get(data.target)
    if target is None:
        raise UnknownTarget(detail={"target": data.target, "known": sorted(targets())})
    if target.purged_with is not None:
        parent = target.purged_with[0]
        raise InvalidPolicy(
            f"{target.name} has no policy of its own: its rows go with their row in {parent}, "
            f"by {parent}'s policy.",
            detail={"field": "target", "target": target.name, "purged_with": parent},
        )
    keep_for = duration_parse(data.keep_for)
    minimum = minimum_keep(target)
    if keep_for < minimum:
        raise RetentionBelowMinimum(
            detail={
                "field": "keep_for",
                "target": target.name,
                "minimum_days": minimum.days,
                "keep_for_days": keep_for.total_seconds() / 86400,
            }
        )
    if data.action not in PolicyAction.values:
        raise InvalidPolicy(
            "action must be delete or anonymize.", detail={"field": "action", "known": ["delete"]}
        )
    if data.action == PolicyAction.ANONYMIZE and not target.anonymize:
        raise InvalidPolicy(
            f"{target.name} cannot be anonymised, only deleted.", detail={"field": "action"}
        )
    if not isinstance(data.batch_size, int) or not 1 <= data.batch_size <= 1_000_000:
        raise InvalidPolicy("batch_size must be from 1 to 1000000.", detail={"field": "batch_size"})
    condition = _condition_validate(target, data.condition)
    purpose = None
    if data.purpose:
        purpose = Purpose.objects.filter(key=data.purpose).first()
        if purpose is None:
            raise InvalidPolicy("Unknown purpose.", detail={"field": "purpose"})
        # Accountability records never go with a withdrawal: that would undercut the minimum.
        if (
            not target.holds_personal_data
            or target.accountability
            or target.erasure in (ErasureMode.LEDGER, ErasureMode.LINEAGE)
        ):
            raise InvalidPolicy(
                "Only a target holding subjects' data rows can be tied to a purpose.",
                detail={"field": "purpose", "target": target.name},
            )
    return CleanPolicy(
        name=data.name,
        target=target.name,
        keep_for=keep_for,
        action=data.action,
        condition=condition,
        batch_size=data.batch_size,
        enabled=data.enabled,
        purpose=purpose,
    )


def policy_create(*, data: PolicyInput, actor: Actor) -> RetentionPolicy:
    clean = policy_validate(data)
    try:
        with transaction.atomic():
            policy = RetentionPolicy.objects.create(**clean.__dict__)
            audit_record(
                actor=actor,
                action="retention.policy_create",
                target_type="retention_policy",
                target_id=str(policy.pk),
                detail={"name": policy.name, "target": policy.target},
            )
    except IntegrityError as exc:
        raise DuplicatePolicy(detail={"name": data.name}) from exc
    return policy


def policy_input(policy: RetentionPolicy) -> PolicyInput:
    """A saved policy as the input that would save it again (a base for partial updates)."""
    return PolicyInput(
        name=policy.name,
        target=policy.target,
        keep_for=policy.keep_for,
        action=policy.action,
        condition=dict(policy.condition or {}),
        batch_size=policy.batch_size,
        enabled=policy.enabled,
        purpose=policy.purpose.key if policy.purpose is not None else None,
    )


def policy_update(*, policy: RetentionPolicy, data: PolicyInput, actor: Actor) -> RetentionPolicy:
    """Replaces a policy's settings (validated like a new one) and audits old and new."""
    clean = policy_validate(data)
    try:
        with transaction.atomic():
            locked = RetentionPolicy.objects.select_for_update().get(pk=policy.pk)
            before = _policy_summary(locked)
            for name, value in clean.__dict__.items():
                setattr(locked, name, value)
            locked.save()
            audit_record(
                actor=actor,
                action="retention.policy_update",
                target_type="retention_policy",
                target_id=str(locked.pk),
                detail={"before": before, "after": _policy_summary(locked)},
            )
    except IntegrityError as exc:
        raise DuplicatePolicy(detail={"name": data.name}) from exc
    return locked


def _policy_summary(policy: RetentionPolicy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "target": policy.target,
        "keep_for_days": policy.keep_for.total_seconds() / 86400,
        "action": policy.action,
        "condition": policy.condition,
        "enabled": policy.enabled,
    }


def policies_seed_defaults() -> list[RetentionPolicy]:
    """One default policy per registered target that has none (run by a data migration and
    safe to run again)."""
    made = []
    with transaction.atomic():
        for target in targets().values():
            if target.purged_with is not None:
                continue  # goes with its parent, by the parent's policy
            if RetentionPolicy.objects.filter(target=target.name).exists():
                continue
            made.append(
                RetentionPolicy.objects.create(
                    name=f"default: {target.name}",
                    target=target.name,
                    keep_for=max(target.default_keep, minimum_keep(target)),
                    action=target.default_action,
                    condition=target.default_condition,
                    batch_size=target.default_batch_size,
                    purpose=Purpose.objects.filter(key=target.purpose).first()
                    if target.purpose
                    else None,
                )
            )
    return made
