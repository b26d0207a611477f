"""Writes to API clients and their keys."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from governance.errors import InvalidRequest
from governance.keys import display_prefix, generate_key, hash_key
from governance.models import ApiClient, ApiKey, Scope


def scopes_validate(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s.strip()})
    unknown = [s for s in cleaned if s not in Scope.values]
    if unknown:
        raise InvalidRequest(
            "Unknown scope.", detail={"unknown": unknown, "known": list(Scope.values)}
        )
    return cleaned


def api_key_issue(*, client: ApiClient) -> str:
    """Adds a key to the client and returns it in plaintext, the only time it is seen."""
    key = generate_key(client.kind)
    ApiKey.objects.create(client=client, prefix=display_prefix(key), key_hash=hash_key(key))
    return key


@transaction.atomic
def api_client_create(
    *,
    name: str,
    scopes: Iterable[str] = (),
    kind: str = ApiClient.Kind.SECRET,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiClient, str]:
    if kind not in ApiClient.Kind.values:
        raise InvalidRequest(f"Unknown key kind {kind!r}.")
    cleaned = scopes_validate(scopes) if kind == ApiClient.Kind.SECRET else []
    if ApiClient.objects.filter(name=name).exists():
        raise InvalidRequest(f"An API client named {name!r} already exists.")
    client = ApiClient.objects.create(
        name=name, kind=kind, scopes=cleaned, rate_limit_per_minute=rate_limit_per_minute
    )
    return client, api_key_issue(client=client)
