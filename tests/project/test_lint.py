"""`make lint` as part of the test run: ruff's rules and the import contracts, both configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .import_contracts import check_contracts

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check_passes():
    r = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "."])
    assert r.returncode == 0, f"ruff check found problems (fix them, or `ruff check --fix`):\n{r.stdout}{r.stderr}"


def test_import_contracts_hold():
    r = check_contracts()
    assert r.returncode == 0, \
        f"an import contract is broken (see [tool.importlinter] in pyproject.toml):\n{r.stdout}{r.stderr}"
