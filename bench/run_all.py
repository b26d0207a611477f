"""Runs every benchmark in turn (`make bench`); each prints its figure beside its baseline.

    uv run python bench/run_all.py [checks writes purge lakehouse]

Each script uses its own PostgreSQL database, so the test database is never touched.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = ["checks", "writes", "purge", "import", "lakehouse"]


def main(names: list[str]) -> int:
    failed = []
    for name in names or ORDER:
        script = BENCH / f"{name}.py"
        if not script.exists():
            print(f"== {name}: no bench/{name}.py here, skipped")
            continue
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=BENCH.parent).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
