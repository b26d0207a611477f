"""Which fact gatherer a database gets: PostgreSQL's one SQL template (`facts_pg`) or the
portable ORM reads (`facts`), picked once per database alias."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from consent.checks.facts import Facts, PortableFacts
from consent.checks.facts_pg import PostgresFacts
from governance.db import PerDatabase

_FACTS: PerDatabase[Facts] = PerDatabase(postgresql=PostgresFacts(), portable=PortableFacts())


def facts_for(connection: BaseDatabaseWrapper) -> Facts:
    """The fact gatherer for this connection's database."""
    return _FACTS(connection.alias)
