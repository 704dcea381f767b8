"""The one way tests run the real ``partctl``: a subprocess, the way a user runs it.

Tests take the ``partctl`` fixture (tests/conftest.py), which adds a guard on top of ``run_partctl``:
a command that starts a local Ray in a test not marked ``ray`` fails that test, so the fast lane
(``make test-fast``) never starts Ray by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PARTCTL = shutil.which("partctl", path=str(Path(sys.executable).parent)) or "partctl"


def partctl_env(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """This environment with a wide terminal (rich tables on one line) and no inherited ``RAY_ADDRESS``
    (a command must never attach to a cluster from the shell); ``env`` values of None remove a variable."""
    merged: dict[str, str | None] = {**os.environ, "COLUMNS": "200", "RAY_ADDRESS": None, **(env or {})}
    return {k: v for k, v in merged.items() if v is not None}


def run_partctl(
    *args: str, timeout: float = 300, env: dict[str, str | None] | None = None, cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PARTCTL, *args], capture_output=True, text=True, cwd=cwd, env=partctl_env(env), timeout=timeout
    )
