"""Sets the staff role groups' permissions as governance.roles defines them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from governance.roles import roles_sync


class Command(BaseCommand):
    help = (
        "Create the staff role groups (Privacy officer, Support, Auditor) and set their "
        "permissions as governance/roles.py says. `migrate` does this too."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for name, count in roles_sync().items():
            self.stdout.write(f"{name}: {count} permissions")
