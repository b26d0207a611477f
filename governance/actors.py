"""Who did something: an API client, a staff user or the service itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    label: str = ""
    # The prefix of the API key that authenticated the request, for the audit trail.
    key: str = ""

    @classmethod
    def for_client(cls, client: Any) -> Actor:
        return cls("api_client", str(client.pk), client.name, getattr(client, "auth_key", ""))

    @classmethod
    def for_staff(cls, user: Any) -> Actor:
        return cls("staff", str(user.pk), user.get_username())

    @classmethod
    def system(cls, label: str = "service") -> Actor:
        return cls("system", "", label)
