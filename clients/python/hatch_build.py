"""The wheel's build hook: builds the Spark HMAC's jar (java/build_jar.py) when a JDK is
found, so `pip install ./clients/python[spark]` carries it; never fails the build without
one (the client then uses Spark's built-in sha2)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class SparkJarHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        spec = importlib.util.spec_from_file_location(
            "build_jar", Path(self.root) / "java" / "build_jar.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            module.build()
        except Exception as exc:  # a broken JDK: the wheel goes without the jar
            print(f"the Spark HMAC's jar was not built: {exc}", file=sys.stderr)
