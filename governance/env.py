"""Typed access to the environment, so settings.py reads as a list of documented variables."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ImproperlyConfiguredEnv(RuntimeError):
    """A variable is present but cannot be read as the type settings need."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def _env_number(name: str, default: N, cast: Callable[[str], N], kind: str) -> N:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return cast(value)
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name} must be {kind}, got {value!r}") from exc


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_ports(name: str) -> tuple[int | range, ...]:
    """TCP ports and inclusive ranges, comma-separated: `8080,8443,9000-9099`."""
    ports: list[int | range] = []
    for item in env_list(name, []):
        low, _, high = item.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError as exc:
            raise ImproperlyConfiguredEnv(f"{name}: {item!r} is not a port or range") from exc
        if not 1 <= first <= last <= 65535:
            raise ImproperlyConfiguredEnv(f"{name}: {item!r} is outside 1-65535")
        ports.append(first if first == last else range(first, last + 1))
    return tuple(ports)
