"""Builds consent_client/jars/consent-spark.jar (the Spark HMAC as a JVM function) with the
JDK's javac and jar, against a stand-in of Spark's UDF3 interface (java/stubs/, never
packaged), so neither pyspark nor a network is needed. Used by `make install` and by the
wheel's build hook (hatch_build.py); where no JDK is found it builds nothing and says so,
and the client hashes with Spark's built-in sha2 instead.

    python clients/python/java/build_jar.py [TARGET]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = sorted((HERE / "org").rglob("*.java"))
STUBS = HERE / "stubs"
TARGET = HERE.parent / "consent_client" / "jars" / "consent-spark.jar"


def build(target: Path = TARGET) -> bool:
    """Compiles and packs the jar at `target` unless it is newer than every source; False
    when there is no JDK (javac and jar on PATH)."""
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        print("javac not found: the Spark filter will hash with Spark's sha2", file=sys.stderr)
        return False
    newest = max(p.stat().st_mtime for p in [*SOURCES, *STUBS.rglob("*.java")])
    if target.exists() and target.stat().st_mtime >= newest:
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as classes:
        subprocess.run(
            [javac, "--release", "17", "-nowarn", "-implicit:none", "-sourcepath", str(STUBS),
             "-d", classes, *map(str, SOURCES)],
            check=True,
        )  # fmt: skip
        subprocess.run([jar, "--create", "--file", str(target), "-C", classes, "."], check=True)
    return True


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET)
