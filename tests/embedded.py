"""A script run by `manage.py shell` against the embedded default (SQLite in a temporary
directory, no Redis, no broker settings): how the tests show a path works on `make run`'s
stack as well as on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_on_sqlite(tmp_path: Path, script: str, *, migrate: bool = False, cwd: Path = ROOT) -> str:
    """Runs `script` in a fresh process on a SQLite database under `tmp_path` (migrated
    first when `migrate`); its standard output, once it has exited 0."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RETENTION_", "EXTERNAL_DATABASE_URL_", "REDIS_URL", "CELERY_"))
    }
    env.update(
        {
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "governance.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'governance.sqlite3'}",
            "VAR_DIR": str(tmp_path / "var"),
            "PYTHONPATH": str(ROOT),
        }
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    if migrate:
        subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    done = subprocess.run(
        [*manage, "shell", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
