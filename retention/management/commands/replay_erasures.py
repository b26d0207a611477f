"""`python manage.py replay_erasures`: applies every erasure tombstone again (after a restore)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from retention.services.rights import erasures_replay


class Command(BaseCommand):
    help = "Erase again every subject an erasure tombstone names that a restore brought back."

    def handle(self, *args: Any, **options: Any) -> None:
        replayed = erasures_replay()
        self.stdout.write(f"replayed {len(replayed)} erasure(s)")
